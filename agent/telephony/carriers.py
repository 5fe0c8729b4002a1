"""The carriers, as declarations: for each, its call-control API (when its credentials are set), the number its
outbound calls come from, how its stream opens, its stream serializer and how a mark is asked for on its stream.
Everything a call needs is built from the admitted stream's opening (plain data) and the settings, so a call can
run in any process that has both (a worker process reads the opening again, relayed as sent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.settings import Settings
from agent.telephony import plivo, telnyx, twilio
from agent.telephony.gate import StreamOpening
from agent.telephony.plivo_rest import PlivoApi
from agent.telephony.rest import CallControl, CarrierApi
from agent.telephony.stream_messages import CheckedStreamMessages
from agent.telephony.telnyx_rest import TelnyxApi
from agent.telephony.twilio_rest import TwilioApi

CARRIER_RATE = 8000  # every carrier streams 8 kHz narrowband audio

MarkCallback = Callable[[str], Awaitable[None]]
StopCallback = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Carrier:
    name: str
    api: Callable[[Settings], CarrierApi | None]
    serializer: type[CheckedStreamMessages]  # (opening, *, on_mark, on_stop); `read_opening` reads the opening
    mark_message: Callable[[StreamOpening, str], str]
    close_is_stop: bool = False  # the carrier ends a stream by closing its socket (no `stop` message)

    def from_number(self, settings: Settings) -> str:
        """The number its outbound calls come from (`<CARRIER>_FROM_NUMBER`)."""
        return str(getattr(settings, f"{self.name}_from_number"))

    def control(self, settings: Settings, call_id: str) -> CallControl:
        return CallControl(self.api(settings), call_id)


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


CARRIERS: dict[str, Carrier] = {
    "twilio": Carrier(
        "twilio",
        _twilio_api,
        twilio.TwilioMediaStreamSerializer,
        lambda opening, name: twilio.mark_message(opening.stream_id, name),
    ),
    "telnyx": Carrier(
        "telnyx",
        _telnyx_api,
        telnyx.TelnyxMediaStreamSerializer,
        lambda opening, name: telnyx.mark_message(name),
    ),
    "plivo": Carrier(
        "plivo",
        _plivo_api,
        plivo.PlivoMediaStreamSerializer,
        lambda opening, name: plivo.checkpoint_message(opening.stream_id, name),
        close_is_stop=True,
    ),
}
