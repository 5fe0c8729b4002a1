"""The Telnyx bridge's routes (`POST /telnyx/voice`, `WS /telnyx/stream`, `POST /telnyx/amd`): the shared phone
routes (`phone_routes.py`) with Telnyx's gate (`agent/telephony/telnyx_admission.py`) and TeXML, in TELNYX_CODEC
both ways."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import FormData

from agent.latency.observer import TurnListener
from agent.server.metrics import TurnMetrics
from agent.server.phone_routes import Bridge, add_phone_routes, answered_by_action
from agent.server.phone_slots import PhoneSlots
from agent.settings import Settings
from agent.telephony.admission import StreamTokens
from agent.telephony.markup import say_and_hang_up
from agent.telephony.telnyx import answer_texml
from agent.telephony.telnyx_admission import TelnyxAdmission


def add_telnyx_routes(
    app: FastAPI,
    settings: Settings,
    slots: PhoneSlots,
    metrics: TurnMetrics,
    record_turn: TurnListener,
    tokens: StreamTokens,
) -> None:
    def answer(stream_url: str, parameters: dict[str, str], form: FormData) -> str:
        return answer_texml(stream_url, parameters, settings.telnyx_codec)

    admission = TelnyxAdmission(settings, tokens, metrics.refusal_counter("phone"))
    bridge = Bridge(admission, answer=answer, busy=say_and_hang_up, machine_action=answered_by_action)
    add_phone_routes(app, bridge, settings, slots, metrics, record_turn)
