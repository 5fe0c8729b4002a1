"""Who gets onto the phone bridge: Twilio's incoming-call webhook, and the media streams it starts.

Signed mode (TWILIO_AUTH_TOKEN set): the webhook and the stream's websocket upgrade must carry Twilio's
`X-Twilio-Signature` (over the public URL; the stream's is replayable, so it is not enough alone), and the stream's
`start` must bring back the one-time token the webhook's TwiML gave that very call (`<Parameter>` ->
`customParameters`). Unsigned mode, without the auth token: on a server only this machine can reach, clients on
this machine only; on a public one (HOST not loopback, or PUBLIC_URL set) only with TWILIO_ALLOW_UNSIGNED=true.
In every mode the SIDs must have Twilio's formats (the CallSid ends up in the REST hang-up URL) and, with
TWILIO_ACCOUNT_SID set, the stream must belong to that account.

Every refusal is logged (without secrets) and reported to `on_refused(reason)` for /metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl

from fastapi import Request, WebSocket
from loguru import logger
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection

from agent.protocols.websocket_transport import close_if_open
from agent.server.access import is_local_client, is_loopback_host
from agent.settings import Settings, SettingsError
from agent.telephony.admission import AdmissionRefused, StreamTokens
from agent.telephony.twilio import CALL_SID, StreamStart, TwilioProtocolError, read_stream_start, signature_valid

STREAM_PATH = "/twilio/stream"
TOKEN_PARAMETER = "streamToken"
MAX_WEBHOOK_BYTES = 64 * 1024  # Twilio's call webhooks are ~1-2 KB
MAX_WEBHOOK_FIELDS = 200
FORM_TYPE = "application/x-www-form-urlencoded"


class TwilioAdmission:
    """Checks the webhook and the streams against the mode the settings put the bridge in."""

    def __init__(self, settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None]) -> None:
        self._auth_token = settings.twilio_auth_token.get_secret_value()
        self._account_sid = settings.twilio_account_sid
        self._public = settings.public_url.rstrip("/")
        self._open = settings.twilio_allow_unsigned
        self._tokens = tokens
        self._on_refused = on_refused

    @classmethod
    def from_settings(cls, settings: Settings, on_refused: Callable[[str], None]) -> TwilioAdmission:
        """The admission for these settings; SettingsError when the bridge would be open to the internet."""
        public = not is_loopback_host(settings.host) or bool(settings.public_url)
        if not settings.twilio_auth_token and public and not settings.twilio_allow_unsigned:
            where = f"PUBLIC_URL={settings.public_url}" if settings.public_url else f"HOST={settings.host}"
            raise SettingsError(
                f"TWILIO_AUTH_TOKEN is not set and the phone bridge is reachable from other machines ({where}): "
                "set TWILIO_AUTH_TOKEN so Twilio's signatures are checked, or TWILIO_ALLOW_UNSIGNED=true to let "
                "anyone who finds the URL place calls"
            )
        admission = cls(settings, StreamTokens.from_settings(settings), on_refused)
        logger.info(f"twilio: {admission.description}")
        return admission

    @property
    def signed(self) -> bool:
        return bool(self._auth_token)

    @property
    def description(self) -> str:
        if self.signed:
            return "signed mode: webhooks and stream upgrades must carry Twilio's signature, streams a call's token"
        if self._open:
            return "UNSIGNED mode (TWILIO_ALLOW_UNSIGNED=true): anyone who reaches the phone routes can place calls"
        return "unsigned mode, clients on this machine only (set TWILIO_AUTH_TOKEN before exposing the server)"

    async def webhook_form(self, request: Request) -> FormData:
        """The webhook's form, read only if it is small and form-encoded, and only if it comes from Twilio."""
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
            raise self._refuse("content_type", "a webhook that is not form-encoded", status=415)
        length = request.headers.get("content-length", "")
        if length and not (length.isascii() and length.isdigit() and int(length) <= MAX_WEBHOOK_BYTES):
            raise self._refuse("body_size", f"a webhook body of {length[:20]} bytes", status=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                raise self._refuse("body_size", f"a webhook body over {MAX_WEBHOOK_BYTES} bytes", status=413)
        try:
            form = FormData(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_WEBHOOK_FIELDS))
        except ValueError as e:  # bad UTF-8, too many fields
            raise self._refuse("form", f"a webhook form that cannot be read ({type(e).__name__})", status=400) from None
        self._check_sender(request, form)
        call_sid = form.get("CallSid")
        if not isinstance(call_sid, str) or not CALL_SID.fullmatch(call_sid):
            raise self._refuse("sid_format", f"a webhook with CallSid {str(call_sid)[:40]!r}", status=400)
        return form

    def stream_url(self, connection: HTTPConnection) -> str:
        """The stream's wss URL for the TwiML: what Twilio dials and signs."""
        base = self._public or f"{connection.url.scheme}://{connection.url.netloc}"
        return re.sub(r"^http", "ws", base) + STREAM_PATH

    def stream_parameters(self, form: FormData) -> dict[str, str]:
        """The `<Parameter>`s of the call's `<Stream>`: who calls whom, and the call's one-time stream token."""
        parameters = {k: str(form[k]) for k in ("From", "To", "CallSid") if k in form}
        if self.signed:
            parameters[TOKEN_PARAMETER] = self._tokens.issue(str(form["CallSid"]))
        return parameters

    async def admit_stream(self, websocket: WebSocket) -> StreamStart | None:
        """Check the upgrade, accept, read and check `start`: the admitted stream, or None once refused and closed
        with 1008 (before the upgrade completes, which the client sees as HTTP 403, or after `start`)."""
        try:
            self._check_sender(websocket, None)
        except AdmissionRefused:
            await close_if_open(websocket, 1008)
            return None
        await websocket.accept()
        try:
            start = await self._read_start(websocket)
            self._check_start(start)
        except AdmissionRefused:
            await close_if_open(websocket, 1008)
            return None
        return start

    async def _read_start(self, websocket: WebSocket) -> StreamStart:
        try:
            return await read_stream_start(websocket)
        except TimeoutError:
            raise self._refuse("handshake", "a stream with no 'start' in time") from None
        except TwilioProtocolError as e:
            raise self._refuse(e.reason, f"a stream that did not start as Twilio's do: {e}") from None

    def _check_sender(self, connection: HTTPConnection, form: FormData | None) -> None:
        """The request is Twilio's (signed mode), or allowed unsigned by the mode."""
        if self.signed:
            if not signature_valid(self._auth_token, self._signed_url(connection), form, _signature(connection)):
                kind = "webhook" if form is not None else "stream upgrade"
                raise self._refuse("signature", f"a {kind} without a valid X-Twilio-Signature")
        elif not self._open and not is_local_client(connection):
            raise self._refuse("not_local", "an unsigned request from another machine")

    def _check_start(self, start: StreamStart) -> None:
        if self._account_sid and start.account_sid != self._account_sid:
            raise self._refuse("account", f"call {start.call_sid} of another account")
        if self.signed:
            try:
                self._tokens.redeem(start.custom_parameters.get(TOKEN_PARAMETER), start.call_sid)
            except AdmissionRefused as refused:
                raise self._refuse(refused.reason, f"call {start.call_sid}: {refused}") from None

    def _signed_url(self, connection: HTTPConnection) -> str:
        """The URL Twilio signed: the public one when PUBLIC_URL is set (the server may sit behind a proxy)."""
        url = connection.url
        if not self._public:
            return str(url)
        base = self._public if url.scheme in ("http", "https") else re.sub(r"^http", "ws", self._public)
        return base + url.path + (f"?{url.query}" if url.query else "")

    def _refuse(self, reason: str, detail: str, *, status: int = 403) -> AdmissionRefused:
        logger.warning(f"twilio: refused {detail} ({reason})")
        self._on_refused(reason)
        return AdmissionRefused(reason, detail, status)


def _signature(connection: HTTPConnection) -> str | None:
    return connection.headers.get("x-twilio-signature")
