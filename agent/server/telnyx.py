"""The Telnyx bridge (`POST /telnyx/voice`, `WS /telnyx/stream`, `POST /telnyx/amd`): the shared phone routes
(`phone_routes.py`) with Telnyx's gate (`agent/telephony/telnyx_admission.py`) and TeXML, in TELNYX_CODEC both
ways."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import FormData

from agent.server.phone_routes import Bridge, answered_by_action
from agent.settings import Settings
from agent.telephony.admission import StreamTokens
from agent.telephony.markup import reject
from agent.telephony.telnyx import answer_texml
from agent.telephony.telnyx_admission import TelnyxAdmission


def telnyx_bridge(settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None]) -> Bridge:
    def answer(stream_url: str, parameters: dict[str, str], form: FormData) -> str:
        return answer_texml(stream_url, parameters, settings.telnyx_codec)

    admission = TelnyxAdmission(settings, tokens, on_refused)
    return Bridge(admission, answer=answer, busy=reject("busy"), machine_action=answered_by_action)
