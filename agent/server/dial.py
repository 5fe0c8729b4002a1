"""Outbound calls: `POST /calls` with `{"to": "+15551234567", "carrier": "<name>", "greeting": "..."}` (carrier: a
name of the registry, DEFAULT_CARRIER when left out; greeting optional), behind OPERATOR_TOKEN (`Authorization:
Bearer <token>`; without one, clients on this machine only). `voice-agent dial` posts here.

The number must be E.164 and match DIAL_ALLOWLIST (toll fraud: nothing is dialled without one). Each operator
credential may place DIAL_BURST calls at once and DIAL_RATE_PER_MINUTE after that, everyone together
DIAL_TOTAL_PER_MINUTE (429 with Retry-After beyond), and outbound calls may hold at most DIAL_MAX_SHARE of the
capacity (503 beyond), so a leaked token can neither buy a burst of calls nor lock callers out. The call takes
its slot from the admission before it is dialled (`phone_slots.py`), so it is refused as busy (full, or
draining) rather than answered into silence. The carrier is asked (its REST API, its From number) to call and
fetch our answer webhook at PUBLIC_URL (`/<carrier>/voice/<INSTANCE_NAME>?dial=<id>`: a load balancer routes it
back to this server), with its asynchronous answering-machine detection posting to `/<carrier>/amd`
(MACHINE_DETECTION). When the callee answers, the stream connects to the same pipeline as an incoming call, and
the agent opens with the greeting (the request's, or DIAL_GREETING).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from loguru import logger

from agent.protocols.http import bounded_body
from agent.server.access import Access
from agent.server.metrics import TurnMetrics
from agent.server.phone_slots import PhoneSlots
from agent.server.rate_limit import RateLimit
from agent.settings import E164, Settings, number_allowed
from agent.telephony.registry import CARRIERS, DEFAULT_CARRIER
from agent.telephony.rest import CarrierError, Outbound

MAX_BODY_BYTES = 4096
MAX_GREETING_CHARS = 500
ANSWER_MARGIN_S = 30.0  # after the ring timeout: the answer webhook and the stream still have to arrive


class DialRefused(Exception):
    """A dial request refused: its HTTP status, the reason counted on /metrics, and the message the client reads."""

    def __init__(self, status: int, reason: str, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class DialOrder:
    """What a `POST /calls` asks for, read and checked: the number (E.164, within DIAL_ALLOWLIST), the carrier (of
    the registry) and the greeting (the request's, or DIAL_GREETING)."""

    to: str
    carrier: str
    greeting: str

    @classmethod
    def read(cls, body: bytes | None, settings: Settings) -> DialOrder:
        """The order in `body` (None: over the size bound); DialRefused with what is wrong."""
        try:
            order: Any = json.loads(body) if body is not None else None
        except (ValueError, RecursionError):
            order = None
        if not isinstance(order, dict):
            raise DialRefused(400, "request", f'expected a JSON object (at most {MAX_BODY_BYTES} bytes) with "to"')
        to, name, greeting = order.get("to"), order.get("carrier", DEFAULT_CARRIER), order.get("greeting")
        greeting = settings.dial_greeting if greeting is None else greeting
        if not isinstance(to, str) or not E164.fullmatch(to):
            raise DialRefused(400, "number", '"to" must be a phone number in E.164 form, e.g. +15551234567')
        if not isinstance(name, str) or name not in CARRIERS:
            raise DialRefused(400, "carrier", f'"carrier" must be one of {", ".join(CARRIERS)}')
        if not isinstance(greeting, str) or len(greeting) > MAX_GREETING_CHARS:
            raise DialRefused(400, "greeting", f'"greeting" must be text of at most {MAX_GREETING_CHARS} characters')
        if not number_allowed(to, settings.dial_prefixes):
            raise DialRefused(403, "dial_allowlist", f"{to} does not match DIAL_ALLOWLIST")
        return cls(to=to, carrier=name, greeting=greeting)


class DialRoute:
    """`POST /calls` (see the module docstring): the operator's token, the order, the carrier's setup, the rate
    limits and the outbound share, a line reserved, then the carrier asked to call."""

    def __init__(self, settings: Settings, slots: PhoneSlots, metrics: TurnMetrics) -> None:
        self._settings = settings
        self._slots = slots
        self._metrics = metrics
        self._operator = Access(settings.operator_token)
        self._rate = RateLimit(
            burst=settings.dial_burst,
            per_minute=settings.dial_rate_per_minute,
            total_burst=max(1, int(settings.dial_total_per_minute / 4)),
            total_per_minute=settings.dial_total_per_minute,
        )

    def add_to(self, app: FastAPI) -> None:
        app.add_api_route("/calls", self.place_call, methods=["POST"])

    async def place_call(self, request: Request) -> JSONResponse:
        try:
            return await self._place(request)
        except DialRefused as refusal:
            logger.warning(f"dial: refused ({refusal.reason}): {refusal.message}")
            self._metrics.dials.labels("none", refusal.reason).inc()
            headers = {"Retry-After": str(refusal.retry_after_s)} if refusal.retry_after_s is not None else None
            return JSONResponse({"error": refusal.message}, status_code=refusal.status, headers=headers)

    async def _place(self, request: Request) -> JSONResponse:
        settings, slots = self._settings, self._slots
        if not self._operator.bearer_allowed(request):
            raise DialRefused(401, "operator_token", "operator token required")
        order = DialOrder.read(await bounded_body(request, MAX_BODY_BYTES), settings)
        name = order.carrier
        carrier = CARRIERS[name]
        api, from_number = carrier.api(settings), carrier.from_number(settings)
        if api is None or not from_number or not settings.public_url:
            missing = "its credentials" if api is None else "its From number" if not from_number else "PUBLIC_URL"
            raise DialRefused(409, "not_configured", f"{name} cannot place calls: set {missing}")
        if wait_s := self._rate.take(credential(request)):
            retry = math.ceil(wait_s)
            raise DialRefused(429, "rate", f"too many calls placed: try again in {retry} s", retry_after_s=retry)
        if not slots.outbound_room():
            raise DialRefused(503, "outbound_share", "outbound calls already hold their share of the lines")
        dial_id = uuid.uuid4().hex
        if not slots.reserve_dial(dial_id, order.greeting):
            raise DialRefused(503, "busy", "no free line: the server is full or draining")
        base = settings.public_url.rstrip("/")
        call = Outbound(
            to=order.to,
            from_number=from_number,
            answer_url=f"{base}/{name}/voice/{settings.instance}?dial={dial_id}",
            machine_url=f"{base}/{name}/amd" if settings.machine_detection else None,
            timeout_s=settings.dial_timeout_seconds,
        )
        try:
            reference = await api.dial(call)
        except CarrierError as e:
            slots.cancel(dial_id)
            logger.error(f"dial: {e}")
            self._metrics.dials.labels(name, "carrier_error").inc()
            return JSONResponse({"error": f"{name} did not place the call"}, status_code=502)
        logger.info(f"dial: {name} is calling {order.to} (dial {dial_id})")
        self._metrics.dials.labels(name, "placed").inc()
        body = {"dial_id": dial_id, "carrier": name, "to": order.to, "reference": reference}
        return JSONResponse(body, status_code=201)


def credential(request: Request) -> str:
    """Who is dialling, for the rate limit: a digest of the bearer credential presented (never the credential
    itself), or the peer's address without one."""
    presented = request.headers.get("authorization", "")
    if presented:
        return "bearer:" + hashlib.sha256(presented.encode()).hexdigest()[:16]
    return "peer:" + (request.client.host if request.client else "?")
