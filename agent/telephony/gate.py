"""The gate every carrier's bridge shares: who may post its webhooks and open its media streams.

A carrier's gate subclasses `CarrierGate` and says how its webhooks are signed (`verify_webhook`), how its
stream opens (`read_opening`) and, for a stream, which call and account it is for. The gate does the rest the same
way for every carrier:

- a webhook body is read only if it is form-encoded and small (64 KiB), then its signature is checked (signed
  mode) or its sender must be on this machine (unsigned mode), unless the operator opened the bridge explicitly;
  a signed webhook is accepted once (`replay.py`): the same signed bytes again are a replay;
- a stream is accepted, its opening read within 10 s and checked: the account, when one is configured, and in
  signed mode the one-time token (`tokens.StreamTokens`) the webhook gave that very call;
- every refusal is logged without secrets, counted through `on_refused(reason)` and raised as `GateRefused`
  (a refused stream is closed with 1008 before any pipeline exists).
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qsl

from fastapi import Request, WebSocket
from loguru import logger
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection

from agent.protocols.http import bounded_body, is_local_client
from agent.protocols.websocket_transport import close_if_open
from agent.settings import Settings
from agent.telephony.replay import ReplayGuard
from agent.telephony.tokens import GateRefused, StreamTokens

MAX_WEBHOOK_BYTES = 64 * 1024  # the carriers' call webhooks are ~1-2 KB
MAX_WEBHOOK_FIELDS = 200
FORM_TYPE = "application/x-www-form-urlencoded"
OPENING_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StreamOpening:
    """What a media stream says about itself before the audio: the carrier's ids, its media encoding ("PCMU" or
    "PCMA"), the parameters our answer document gave it (the stream token, an outbound call's dial id), and its
    opening messages as sent (the front hands them to the worker process that runs the call, which reads them
    again). Plain data: it can cross a process boundary."""

    carrier: str
    call_id: str
    stream_id: str
    account_id: str
    encoding: str = "PCMU"
    parameters: dict[str, str] = field(default_factory=dict)
    messages: tuple[str, ...] = field(default=(), repr=False)

    @property
    def dial_id(self) -> str | None:
        """The id of the outbound call this stream answers (None for an incoming call)."""
        return self.parameters.get(DIAL_PARAMETER) or None


TOKEN_PARAMETER = "streamToken"
SIGNED_HEADER_KEYS = ("signature", "nonce", "timestamp")
DIAL_PARAMETER = "dialId"


class CarrierGate(ABC):
    """One carrier's webhook and stream gate (see the module docstring)."""

    carrier: ClassVar[str]
    credential: ClassVar[str]  # the setting whose absence puts the bridge in unsigned mode
    account_setting: ClassVar[str]  # the account a stream must belong to, when set
    call_field: ClassVar[str]  # the webhooks' call id field ...
    call_id_pattern: ClassVar[re.Pattern[str]]  # ... and its format (the id ends up in REST URLs)

    def __init__(self, settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None]) -> None:
        """Its settings section: signed when `credential` is set, `<CARRIER>_ALLOW_UNSIGNED`, `account_setting`."""
        self.signed = bool(getattr(settings, self.credential.lower()))
        self._open = bool(getattr(settings, f"{self.carrier}_allow_unsigned"))
        self._account_id = str(getattr(settings, self.account_setting.lower()))
        self.public_url = settings.public_url.rstrip("/")
        self.instance = settings.instance  # the stream path a token is issued for: /<carrier>/stream/<instance>
        self._tokens = tokens
        self._on_refused = on_refused
        self._replays = ReplayGuard()

    @property
    def description(self) -> str:
        if self.signed:
            return "signed mode: webhooks must carry the carrier's signature, streams their call's one-time token"
        if self._open:
            return f"UNSIGNED mode ({self.carrier.upper()}_ALLOW_UNSIGNED=true): anyone who reaches it can place calls"
        return f"unsigned mode, clients on this machine only (set {self.credential} before exposing the server)"

    # -- carrier specifics -----------------------------------------------------------------------
    @abstractmethod
    def verify_webhook(self, request: Request, body: bytes, form: FormData) -> bool:
        """Whether the webhook carries the carrier's valid signature (signed mode only)."""

    @abstractmethod
    async def read_opening(self, websocket: WebSocket) -> StreamOpening:
        """Read the stream's opening messages; GateRefused (with a reason) for anything the carrier never sends."""

    def verify_upgrade(self, websocket: WebSocket) -> bool:
        """Whether the stream's upgrade request is signed by the carrier (for carriers that sign it)."""
        return True

    # -- webhooks --------------------------------------------------------------------------------
    async def webhook(self, request: Request) -> FormData:
        """The webhook's form, read only if small and form-encoded, only if the carrier sent it, and only with a
        call id of the carrier's format."""
        body = await self._bounded_body(request)
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_WEBHOOK_FIELDS)
        except ValueError as e:  # bad UTF-8, too many fields
            raise self.refuse("form", f"a webhook form that cannot be read ({type(e).__name__})", status=400) from None
        form = FormData(pairs)
        if self.signed:
            if not self.verify_webhook(request, body, form):
                raise self.refuse("signature", "a webhook without a valid signature")
            if not self._replays.first_time(_signed_parts(request, body)):
                raise self.refuse("replay", "a signed webhook it had already accepted (a replay)")
        else:
            self._check_unsigned(request)
        value = form.get(self.call_field)
        if not isinstance(value, str) or not self.call_id_pattern.fullmatch(value):
            raise self.refuse("sid_format", f"a webhook with {self.call_field} {str(value)[:40]!r}", status=400)
        return form

    async def _bounded_body(self, request: Request) -> bytes:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
            raise self.refuse("content_type", "a webhook that is not form-encoded", status=415)
        body = await bounded_body(request, MAX_WEBHOOK_BYTES)
        if body is None:
            raise self.refuse("body_size", f"a webhook body over {MAX_WEBHOOK_BYTES} bytes", status=413)
        return body

    def _check_unsigned(self, connection: HTTPConnection) -> None:
        if not self._open and not is_local_client(connection):
            raise self.refuse("not_local", "an unsigned request from another machine")

    def call_id(self, form: FormData) -> str:
        """The call id of a form `webhook()` returned."""
        return str(form[self.call_field])

    def stream_parameters(self, call_id: str, dial_id: str | None = None) -> dict[str, str]:
        """The parameters the answer document gives the call's stream: its one-time token (signed mode) and the
        outbound call it answers."""
        parameters = {}
        if self.signed:
            parameters[TOKEN_PARAMETER] = self._tokens.issue(call_id, carrier=self.carrier, instance=self.instance)
        if dial_id:
            parameters[DIAL_PARAMETER] = dial_id
        return parameters

    # -- streams ---------------------------------------------------------------------------------
    async def admit_stream(self, websocket: WebSocket) -> StreamOpening | None:
        """Check the upgrade, accept, read and check the opening: the admitted stream, or None once refused and
        closed with 1008 (before the upgrade completes, which the client sees as HTTP 403, or after the opening)."""
        try:
            if self.signed and not self.verify_upgrade(websocket):
                raise self.refuse("signature", "a stream upgrade without a valid signature")
            if not self.signed:
                self._check_unsigned(websocket)
        except GateRefused:
            await close_if_open(websocket, 1008)
            return None
        await websocket.accept()
        try:
            opening = await self._opening(websocket)
            self._check_opening(opening, websocket.path_params.get("instance", ""))
        except GateRefused:
            await close_if_open(websocket, 1008)
            return None
        return opening

    async def _opening(self, websocket: WebSocket) -> StreamOpening:
        try:
            async with asyncio.timeout(OPENING_TIMEOUT_S):
                return await self.read_opening(websocket)
        except TimeoutError:
            raise self.refuse("handshake", "a stream that did not start in time") from None
        except GateRefused as e:
            raise self.refuse(e.reason, f"a stream that did not start as the carrier's do: {e}") from None

    def _check_opening(self, opening: StreamOpening, instance: str) -> None:
        """The account, and in signed mode the token: issued for this call and carrier, brought to the instance's
        stream path it names (a bare `/<carrier>/stream` path names none)."""
        if self._account_id and opening.account_id != self._account_id:
            raise self.refuse("account", f"call {opening.call_id} of another account")
        if self.signed:
            try:
                self._tokens.redeem(
                    opening.parameters.get(TOKEN_PARAMETER), opening.call_id, carrier=self.carrier, instance=instance
                )
            except GateRefused as refused:
                raise self.refuse(refused.reason, f"call {opening.call_id}: {refused}") from None

    # -- shared ----------------------------------------------------------------------------------
    def public_base(self, connection: HTTPConnection) -> str:
        """This server's public http(s) base URL: PUBLIC_URL, or the one the request came to."""
        return self.public_url or f"{connection.url.scheme}://{connection.url.netloc}"

    def stream_url(self, connection: HTTPConnection, path: str) -> str:
        """The wss URL of a stream path, as the carrier dials (and, for some, signs) it."""
        return re.sub(r"^http", "ws", self.public_base(connection)) + path

    def signed_url(self, connection: HTTPConnection) -> str:
        """The URL the carrier signed: the public one when PUBLIC_URL is set (the server may sit behind a proxy)."""
        url = connection.url
        if not self.public_url:
            return str(url)
        base = self.public_url if url.scheme in ("http", "https") else re.sub(r"^http", "ws", self.public_url)
        return base + url.path + (f"?{url.query}" if url.query else "")

    def refuse(self, reason: str, detail: str, *, status: int = 403) -> GateRefused:
        logger.warning(f"{self.carrier}: refused {detail} ({reason})")
        self._on_refused(reason)
        return GateRefused(reason, detail, status)


def _signed_parts(request: Request, body: bytes) -> list[bytes]:
    """What makes a signed request this request: its path and query, its signature, nonce and timestamp headers
    (whatever the carrier calls them), and its body."""
    headers = sorted(
        f"{name}:{value}" for name, value in request.headers.items() if any(k in name for k in SIGNED_HEADER_KEYS)
    )
    return [request.url.path.encode(), request.url.query.encode(), *(h.encode() for h in headers), body]
