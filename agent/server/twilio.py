"""The Twilio bridge's routes (`POST /twilio/voice`, `WS /twilio/stream`, `POST /twilio/amd`): the shared phone
routes (`phone_routes.py`) with Twilio's gate (`agent/telephony/twilio_admission.py`) and TwiML. The stream's
`<Parameter>`s also carry who calls whom."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import FormData

from agent.latency.observer import TurnListener
from agent.server.metrics import TurnMetrics
from agent.server.phone_routes import Bridge, add_phone_routes, answered_by_action
from agent.server.phone_slots import PhoneSlots
from agent.settings import Settings
from agent.telephony.admission import StreamTokens
from agent.telephony.markup import connect_stream, say_and_hang_up
from agent.telephony.twilio_admission import TwilioAdmission


def answer_twiml(stream_url: str, parameters: dict[str, str], form: FormData) -> str:
    call = {k: str(form[k]) for k in ("From", "To", "CallSid") if k in form}
    return connect_stream(stream_url, call | parameters)


def add_twilio_routes(
    app: FastAPI,
    settings: Settings,
    slots: PhoneSlots,
    metrics: TurnMetrics,
    record_turn: TurnListener,
    tokens: StreamTokens,
) -> None:
    admission = TwilioAdmission.from_settings(settings, metrics.refusal_counter("phone"), tokens)
    bridge = Bridge(admission, answer=answer_twiml, busy=say_and_hang_up, machine_action=answered_by_action)
    add_phone_routes(app, bridge, settings, slots, metrics, record_turn)
