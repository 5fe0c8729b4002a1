"""The Twilio bridge (`POST /twilio/voice`, `WS /twilio/stream`, `POST /twilio/amd`): the shared phone routes
(`agent/server/phone_routes.py`) with Twilio's gate (`gate.py`) and TwiML. The stream's
`<Parameter>`s also carry who calls whom."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import FormData

from agent.settings import Settings
from agent.telephony.bridge import Bridge, answered_by_action
from agent.telephony.markup import connect_stream, reject
from agent.telephony.tokens import StreamTokens
from agent.telephony.twilio.gate import TwilioGate


def answer_twiml(stream_url: str, parameters: dict[str, str], form: FormData) -> str:
    call = {k: str(form[k]) for k in ("From", "To", "CallSid") if k in form}
    return connect_stream(stream_url, call | parameters)


def twilio_bridge(settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None]) -> Bridge:
    gate = TwilioGate.from_settings(settings, on_refused, tokens)
    return Bridge(gate, answer=answer_twiml, busy=reject("busy"), machine_action=answered_by_action)
