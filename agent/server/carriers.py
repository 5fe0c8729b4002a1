"""The phone side of the server: every carrier's bridge (one per entry of `agent/telephony/registry.py`) and
outbound dialling, sharing one set of per-call stream tokens and one place where phone calls take their slots from
the admission (`phone_slots.py`). A webhook a carrier's gate refuses (`GateRefused`) is answered with its
status and a message that holds no secret."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from agent.latency.observer import TurnListener
from agent.server.admission import Admission
from agent.server.dial import ANSWER_MARGIN_S, DialRoute
from agent.server.metrics import TurnMetrics
from agent.server.phone_routes import CarrierRoutes
from agent.server.phone_slots import PhoneSlots
from agent.settings import Settings
from agent.telephony.registry import CARRIERS
from agent.telephony.tokens import GateRefused, StreamTokens


async def refused_webhook(request: Request, refused: Exception) -> Response:
    assert isinstance(refused, GateRefused)
    return Response(str(refused), status_code=refused.status)


def add_carrier_routes(
    app: FastAPI, settings: Settings, admission: Admission, metrics: TurnMetrics, record_turn: TurnListener
) -> None:
    tokens = StreamTokens.from_settings(settings)
    slots = PhoneSlots(admission, settings.dial_timeout_seconds + ANSWER_MARGIN_S, settings.dial_max_share)
    app.add_exception_handler(GateRefused, refused_webhook)
    on_refused = metrics.refusal_counter("phone")
    for carrier in CARRIERS.values():
        bridge = carrier.bridge(settings, tokens, on_refused)
        CarrierRoutes(bridge, settings, slots, metrics, record_turn).add_to(app)
    DialRoute(settings, slots, metrics).add_to(app)
