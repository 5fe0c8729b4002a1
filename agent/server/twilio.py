"""The phone bridge's HTTP side: Twilio's incoming-call webhook (TwiML that connects the call to our stream)
and the Media Streams websocket, which hands each admitted call to `pipelines/phone.py`. Who gets in is decided
by `agent/telephony/twilio_admission.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from loguru import logger

from agent.latency.observer import TurnListener
from agent.protocols.input_guard import InputGuard
from agent.server.metrics import TurnMetrics
from agent.settings import Settings
from agent.telephony.admission import AdmissionRefused
from agent.telephony.twilio import connect_stream_twiml, say_and_hang_up_twiml
from agent.telephony.twilio_admission import STREAM_PATH, TwilioAdmission
from pipelines.phone import run_phone_call

if TYPE_CHECKING:
    from agent.server.app import SessionSlots

BUSY_SPEECH = "Sorry, all our lines are busy right now. Please call again in a minute."
TWIML = "application/xml"


def add_twilio_routes(
    app: FastAPI, settings: Settings, slots: SessionSlots, metrics: TurnMetrics, record_turn: TurnListener
) -> None:
    admission = TwilioAdmission.from_settings(settings, on_refused=metrics.refusal_counter("phone"))

    @app.post("/twilio/voice")
    async def incoming_call(request: Request) -> Response:
        try:
            form = await admission.webhook_form(request)
        except AdmissionRefused as refused:
            return Response(str(refused), status_code=refused.status)
        if slots.active >= slots.limit:
            return Response(say_and_hang_up_twiml(BUSY_SPEECH), media_type=TWIML)
        twiml = connect_stream_twiml(admission.stream_url(request), admission.stream_parameters(form))
        return Response(twiml, media_type=TWIML)

    @app.websocket(STREAM_PATH)
    async def media_stream(websocket: WebSocket) -> None:
        start = await admission.admit_stream(websocket)
        if start is None:
            return
        if not slots.claim():
            logger.warning(f"twilio: no free session for call {start.call_sid}; closing the stream")
            await websocket.close(code=1013)
            return
        metrics.sessions.labels("phone").inc()
        guard = InputGuard(
            "phone", settings.session_idle_timeout_seconds, on_violation=metrics.disconnect_counter("phone")
        )
        try:
            await run_phone_call(websocket, start, websocket.app.state.runtime, record_turn, guard)
        except Exception:
            logger.exception(f"twilio: call {start.call_sid} failed")
        finally:
            slots.release()
            metrics.sessions.labels("phone").dec()
