"""CARRIERS: the one list of carriers, which the server's routes, `voice-agent call`/`dial`, the benchmarks and the
tests read. Adding a carrier means one folder beside `twilio/`, one `Carrier` entry here and one settings section.
Everything a call needs is built from the admitted stream's opening (plain data) and the settings, so a call can
run in any process that has both (a worker process reads the opening again, relayed as sent)."""

from __future__ import annotations

from typing import Any

from agent.settings import Settings
from agent.telephony.carrier import CARRIER_RATE, Carrier
from agent.telephony.plivo import stream as plivo
from agent.telephony.plivo.answer import plivo_bridge
from agent.telephony.plivo.caller import PlivoCaller
from agent.telephony.plivo.rest import PlivoApi
from agent.telephony.rest import CarrierApi
from agent.telephony.telnyx import stream as telnyx
from agent.telephony.telnyx.answer import telnyx_bridge
from agent.telephony.telnyx.caller import TelnyxCaller
from agent.telephony.telnyx.rest import TelnyxApi
from agent.telephony.twilio import stream as twilio
from agent.telephony.twilio.answer import twilio_bridge
from agent.telephony.twilio.caller import TwilioCaller
from agent.telephony.twilio.rest import TwilioApi

__all__ = ["CARRIERS", "CARRIER_RATE", "Carrier"]


def _twilio_api(settings: Settings) -> CarrierApi | None:
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        return None
    token = settings.twilio_auth_token.get_secret_value()
    return TwilioApi(settings.twilio_account_sid, token, settings.twilio_api_base_url)


def _telnyx_api(settings: Settings) -> CarrierApi | None:
    if not settings.telnyx_api_key:
        return None
    return TelnyxApi(
        settings.telnyx_api_key.get_secret_value(),
        account_sid=settings.telnyx_account_sid,
        application_id=settings.telnyx_application_id,
        base_url=settings.telnyx_api_base_url,
    )


def _plivo_api(settings: Settings) -> CarrierApi | None:
    if not (settings.plivo_auth_id and settings.plivo_auth_token):
        return None
    token = settings.plivo_auth_token.get_secret_value()
    return PlivoApi(settings.plivo_auth_id, token, public_url=settings.public_url, base_url=settings.plivo_api_base_url)


def _twilio_credentials(settings: Settings) -> dict[str, Any]:
    return {"auth_token": settings.twilio_auth_token.get_secret_value(), "account_sid": settings.twilio_account_sid}


CARRIERS: dict[str, Carrier] = {
    "twilio": Carrier(
        "twilio",
        _twilio_api,
        twilio.TwilioMediaStreamSerializer,
        lambda opening, name: twilio.mark_message(opening.stream_id, name),
        twilio_bridge,
        TwilioCaller,
        _twilio_credentials,
    ),
    "telnyx": Carrier(
        "telnyx",
        _telnyx_api,
        telnyx.TelnyxMediaStreamSerializer,
        lambda opening, name: telnyx.mark_message(name),
        telnyx_bridge,
        TelnyxCaller,
        lambda settings: {"account_id": settings.telnyx_account_sid},  # Telnyx signs with its own key: unsigned
    ),
    "plivo": Carrier(
        "plivo",
        _plivo_api,
        plivo.PlivoMediaStreamSerializer,
        lambda opening, name: plivo.checkpoint_message(opening.stream_id, name),
        plivo_bridge,
        PlivoCaller,
        lambda settings: {
            "auth_token": settings.plivo_auth_token.get_secret_value(),
            "auth_id": settings.plivo_auth_id,
        },
        close_is_stop=True,
    ),
}
