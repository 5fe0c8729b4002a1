"""Telnyx's entry in the carrier registry (`agent/telephony/registry.py`): what the rest of the house knows of it."""

from __future__ import annotations

from agent.settings import Settings
from agent.telephony.carrier import Carrier
from agent.telephony.rest import CarrierApi
from agent.telephony.telnyx import stream as telnyx
from agent.telephony.telnyx.answer import telnyx_bridge
from agent.telephony.telnyx.caller import TelnyxCaller
from agent.telephony.telnyx.rest import TelnyxApi


def api(settings: Settings) -> CarrierApi | None:
    """Its call-control API, when its credentials are set."""
    if not settings.telnyx_api_key:
        return None
    return TelnyxApi(
        settings.telnyx_api_key.get_secret_value(),
        account_sid=settings.telnyx_account_sid,
        application_id=settings.telnyx_application_id,
        base_url=settings.telnyx_api_base_url,
    )


TELNYX = Carrier(
    "telnyx",
    api,
    telnyx.TelnyxMediaStreamSerializer,
    lambda opening, name: telnyx.mark_message(name),
    telnyx_bridge,
    TelnyxCaller,
    lambda settings: {"account_id": settings.telnyx_account_sid},  # Telnyx signs with its own key: unsigned
)
