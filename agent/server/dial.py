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


def add_dial_route(app: FastAPI, settings: Settings, slots: PhoneSlots, metrics: TurnMetrics) -> None:
    operator = Access(settings.operator_token)
    rate = RateLimit(
        burst=settings.dial_burst,
        per_minute=settings.dial_rate_per_minute,
        total_burst=max(1, int(settings.dial_total_per_minute / 4)),
        total_per_minute=settings.dial_total_per_minute,
    )

    def refused(status: int, reason: str, message: str) -> JSONResponse:
        logger.warning(f"dial: refused ({reason}): {message}")
        metrics.dials.labels("none", reason).inc()
        return JSONResponse({"error": message}, status_code=status)

    @app.post("/calls")
    async def place_call(request: Request) -> JSONResponse:
        if not operator.bearer_allowed(request):
            return refused(401, "operator_token", "operator token required")
        body = await bounded_body(request, MAX_BODY_BYTES)
        try:
            order: Any = json.loads(body) if body is not None else None
        except (ValueError, RecursionError):
            order = None
        if not isinstance(order, dict):
            return refused(400, "request", f'expected a JSON object (at most {MAX_BODY_BYTES} bytes) with "to"')
        to, name, greeting = order.get("to"), order.get("carrier", DEFAULT_CARRIER), order.get("greeting")
        greeting = settings.dial_greeting if greeting is None else greeting
        if not isinstance(to, str) or not E164.fullmatch(to):
            return refused(400, "number", '"to" must be a phone number in E.164 form, e.g. +15551234567')
        if not isinstance(name, str) or name not in CARRIERS:
            return refused(400, "carrier", f'"carrier" must be one of {", ".join(CARRIERS)}')
        if not isinstance(greeting, str) or len(greeting) > MAX_GREETING_CHARS:
            return refused(400, "greeting", f'"greeting" must be text of at most {MAX_GREETING_CHARS} characters')
        if not number_allowed(to, settings.dial_prefixes):
            return refused(403, "dial_allowlist", f"{to} does not match DIAL_ALLOWLIST")
        carrier = CARRIERS[name]
        api, from_number = carrier.api(settings), carrier.from_number(settings)
        if api is None or not from_number or not settings.public_url:
            missing = "its credentials" if api is None else "its From number" if not from_number else "PUBLIC_URL"
            return refused(409, "not_configured", f"{name} cannot place calls: set {missing}")
        if wait_s := rate.take(credential(request)):
            response = refused(429, "rate", f"too many calls placed: try again in {math.ceil(wait_s)} s")
            response.headers["Retry-After"] = str(math.ceil(wait_s))
            return response
        if not slots.outbound_room():
            return refused(503, "outbound_share", "outbound calls already hold their share of the lines")
        dial_id = uuid.uuid4().hex
        if not slots.reserve_dial(dial_id, greeting):
            return refused(503, "busy", "no free line: the server is full or draining")
        base = settings.public_url.rstrip("/")
        call = Outbound(
            to=to,
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
            metrics.dials.labels(name, "carrier_error").inc()
            return JSONResponse({"error": f"{name} did not place the call"}, status_code=502)
        logger.info(f"dial: {name} is calling {to} (dial {dial_id})")
        metrics.dials.labels(name, "placed").inc()
        return JSONResponse({"dial_id": dial_id, "carrier": name, "to": to, "reference": reference}, status_code=201)


def credential(request: Request) -> str:
    """Who is dialling, for the rate limit: a digest of the bearer credential presented (never the credential
    itself), or the peer's address without one."""
    presented = request.headers.get("authorization", "")
    if presented:
        return "bearer:" + hashlib.sha256(presented.encode()).hexdigest()[:16]
    return "peer:" + (request.client.host if request.client else "?")
