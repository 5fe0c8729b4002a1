"""Twilio's entry in the carrier registry (`agent/telephony/registry.py`): what the rest of the house knows of it."""

from __future__ import annotations

from typing import Any

from agent.settings import Settings
from agent.telephony.carrier import Carrier
from agent.telephony.rest import CarrierApi
from agent.telephony.twilio import stream as twilio
from agent.telephony.twilio.answer import twilio_bridge
from agent.telephony.twilio.caller import TwilioCaller
from agent.telephony.twilio.rest import TwilioApi


def api(settings: Settings) -> CarrierApi | None:
    """Its call-control API, when its credentials are set."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        return None
    token = settings.twilio_auth_token.get_secret_value()
    return TwilioApi(settings.twilio_account_sid, token, settings.twilio_api_base_url)


def caller_credentials(settings: Settings) -> dict[str, Any]:
    """What `voice-agent call` signs its webhooks with."""
    return {"auth_token": settings.twilio_auth_token.get_secret_value(), "account_sid": settings.twilio_account_sid}


TWILIO = Carrier(
    "twilio",
    api,
    twilio.TwilioMediaStreamSerializer,
    lambda opening, name: twilio.mark_message(opening.stream_id, name),
    twilio_bridge,
    TwilioCaller,
    caller_credentials,
)
