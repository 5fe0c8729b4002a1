"""Plivo's entry in the carrier registry (`agent/telephony/registry.py`): what the rest of the house knows of it."""

from __future__ import annotations

from agent.settings import Settings
from agent.telephony.carrier import Carrier
from agent.telephony.plivo import stream as plivo
from agent.telephony.plivo.answer import plivo_bridge
from agent.telephony.plivo.caller import PlivoCaller
from agent.telephony.plivo.rest import PlivoApi
from agent.telephony.rest import CarrierApi


def api(settings: Settings) -> CarrierApi | None:
    """Its call-control API, when its credentials are set."""
    if not (settings.plivo_auth_id and settings.plivo_auth_token):
        return None
    token = settings.plivo_auth_token.get_secret_value()
    return PlivoApi(settings.plivo_auth_id, token, public_url=settings.public_url, base_url=settings.plivo_api_base_url)


PLIVO = Carrier(
    "plivo",
    api,
    plivo.PlivoMediaStreamSerializer,
    lambda opening, name: plivo.checkpoint_message(opening.stream_id, name),
    plivo_bridge,
    PlivoCaller,
    lambda settings: {
        "auth_token": settings.plivo_auth_token.get_secret_value(),
        "auth_id": settings.plivo_auth_id,
    },
    close_is_stop=True,
)
