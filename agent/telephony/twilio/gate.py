"""Who gets onto the Twilio bridge: Twilio's webhooks (incoming and outbound calls, answering-machine results), and
the media streams they start.

Signed mode (TWILIO_AUTH_TOKEN set): webhooks and the stream's websocket upgrade must carry Twilio's
`X-Twilio-Signature` (over the public URL; the stream's is replayable, so it is not enough alone), and the stream's
`start` must bring back the one-time token the webhook's TwiML gave that very call (`<Parameter>` ->
`customParameters`). Unsigned mode, without the auth token: on a server only this machine can reach, clients on
this machine only; on a public one (HOST not loopback, or PUBLIC_URL set) only with TWILIO_ALLOW_UNSIGNED=true.
In every mode the SIDs must have Twilio's formats (the CallSid ends up in the REST URLs) and, with
TWILIO_ACCOUNT_SID set, the stream must belong to that account. The rest is the carriers' shared gate
(`gate.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request, WebSocket
from loguru import logger
from starlette.datastructures import FormData

from agent.protocols.http import is_loopback_host
from agent.settings import Settings, SettingsError
from agent.telephony.gate import CarrierGate, StreamOpening
from agent.telephony.tokens import StreamTokens
from agent.telephony.twilio.stream import CALL_SID, TwilioMediaStreamSerializer, signature_valid


class TwilioGate(CarrierGate):
    """Checks Twilio's webhooks and streams against the mode the settings put the bridge in."""

    carrier = "twilio"
    credential = "TWILIO_AUTH_TOKEN"
    account_setting = "TWILIO_ACCOUNT_SID"
    call_field = "CallSid"
    call_id_pattern = CALL_SID

    def __init__(self, settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None]) -> None:
        super().__init__(settings, tokens, on_refused)
        self._auth_token = settings.twilio_auth_token.get_secret_value()

    @classmethod
    def from_settings(
        cls, settings: Settings, on_refused: Callable[[str], None], tokens: StreamTokens | None = None
    ) -> TwilioGate:
        """The gate for these settings; SettingsError when the bridge would be open to the internet."""
        public = not is_loopback_host(settings.host) or bool(settings.public_url)
        if not settings.twilio_auth_token and public and not settings.twilio_allow_unsigned:
            where = f"PUBLIC_URL={settings.public_url}" if settings.public_url else f"HOST={settings.host}"
            raise SettingsError(
                f"TWILIO_AUTH_TOKEN is not set and the phone bridge is reachable from other machines ({where}): "
                "set TWILIO_AUTH_TOKEN so Twilio's signatures are checked, or TWILIO_ALLOW_UNSIGNED=true to let "
                "anyone who finds the URL place calls"
            )
        gate = cls(settings, tokens or StreamTokens.from_settings(settings), on_refused)
        logger.info(f"twilio: {gate.description}")
        return gate

    def verify_webhook(self, request: Request, body: bytes, form: FormData) -> bool:
        return signature_valid(self._auth_token, self.signed_url(request), form, _signature(request))

    def verify_upgrade(self, websocket: WebSocket) -> bool:
        return signature_valid(self._auth_token, self.signed_url(websocket), None, _signature(websocket))

    async def read_opening(self, websocket: WebSocket) -> StreamOpening:
        return await TwilioMediaStreamSerializer.read_opening(websocket)


def _signature(request: Request | WebSocket) -> str | None:
    return request.headers.get("x-twilio-signature")
