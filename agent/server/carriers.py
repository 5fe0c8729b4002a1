"""The phone side of the server: every carrier's bridge (Twilio, Telnyx, Plivo) and outbound dialling, sharing one
set of per-call stream tokens and one place where phone calls claim capacity."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from agent.latency.observer import TurnListener
from agent.server.dial import ANSWER_MARGIN_S, add_dial_route
from agent.server.metrics import TurnMetrics
from agent.server.phone_slots import PhoneSlots
from agent.server.plivo import add_plivo_routes
from agent.server.telnyx import add_telnyx_routes
from agent.server.twilio import add_twilio_routes
from agent.settings import Settings
from agent.telephony.admission import StreamTokens

if TYPE_CHECKING:
    from agent.server.app import SessionSlots


def add_carrier_routes(
    app: FastAPI, settings: Settings, sessions: SessionSlots, metrics: TurnMetrics, record_turn: TurnListener
) -> PhoneSlots:
    tokens = StreamTokens.from_settings(settings)
    slots = PhoneSlots(sessions, settings.dial_timeout_seconds + ANSWER_MARGIN_S)
    for add_routes in (add_twilio_routes, add_telnyx_routes, add_plivo_routes):
        add_routes(app, settings, slots, metrics, record_turn, tokens)
    add_dial_route(app, settings, slots, metrics)
    return slots
