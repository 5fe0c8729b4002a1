"""The Telnyx bridge (`POST /telnyx/voice`, `WS /telnyx/stream`, `POST /telnyx/amd`): the shared phone routes
(`agent/server/phone_routes.py`) with Telnyx's gate (`gate.py`) and TeXML, in TELNYX_CODEC both
ways."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import FormData

from agent.settings import Settings
from agent.telephony.bridge import Bridge, answered_by_action
from agent.telephony.markup import connect_stream, reject
from agent.telephony.telnyx.gate import TelnyxGate
from agent.telephony.tokens import StreamTokens


def answer_texml(stream_url: str, parameters: dict[str, str], codec: str) -> str:
    """The TeXML that connects a call to our stream, both ways, in `codec`."""
    return connect_stream(stream_url, parameters, bidirectionalMode="rtp", bidirectionalCodec=codec, codec=codec)


def telnyx_bridge(settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None]) -> Bridge:
    def answer(stream_url: str, parameters: dict[str, str], form: FormData) -> str:
        return answer_texml(stream_url, parameters, settings.telnyx_codec)

    gate = TelnyxGate(settings, tokens, on_refused)
    return Bridge(gate, answer=answer, busy=reject("busy"), machine_action=answered_by_action)
