"""The phone bridge's HTTP side: Twilio's incoming-call webhook (TwiML that connects the call to our stream)
and the Media Streams websocket, which hands each call to `pipelines/phone.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from loguru import logger

from agent.latency.observer import TurnListener
from agent.protocols.twilio import (
    TwilioProtocolError,
    connect_stream_twiml,
    read_stream_start,
    say_and_hang_up_twiml,
    signature_valid,
)
from agent.server.metrics import TurnMetrics
from agent.settings import Settings
from pipelines.phone import run_phone_call

if TYPE_CHECKING:
    from agent.server.app import SessionSlots

BUSY_SPEECH = "Sorry, all our lines are busy right now. Please call again in a minute."
TWIML = "application/xml"


def add_twilio_routes(
    app: FastAPI, settings: Settings, slots: SessionSlots, metrics: TurnMetrics, record_turn: TurnListener
) -> None:
    @app.post("/twilio/voice")
    async def incoming_call(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        public = settings.public_url.rstrip("/")
        if settings.twilio_auth_token:
            url = f"{public}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
            if not signature_valid(
                settings.twilio_auth_token.get_secret_value(), url if public else str(request.url), form,
                request.headers.get("x-twilio-signature"),
            ):  # fmt: skip
                logger.warning(f"twilio: refused a webhook with a bad signature (call {form.get('CallSid', '?')})")
                return Response("invalid signature", status_code=403)
        if slots.active >= slots.limit:
            return Response(say_and_hang_up_twiml(BUSY_SPEECH), media_type=TWIML)
        base = public or f"{request.url.scheme}://{request.url.netloc}"
        stream_url = base.replace("https://", "wss://").replace("http://", "ws://") + "/twilio/stream"
        parameters = {k: form[k] for k in ("From", "To", "CallSid") if k in form}
        return Response(connect_stream_twiml(stream_url, parameters), media_type=TWIML)

    @app.websocket("/twilio/stream")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            start = await read_stream_start(websocket)
        except (TwilioProtocolError, TimeoutError) as e:
            logger.warning(f"twilio: closing a stream that did not start properly: {e or 'no start in time'}")
            await websocket.close(code=1008)
            return
        if not slots.claim():
            logger.warning(f"twilio: no free session for call {start.call_sid}; closing the stream")
            await websocket.close(code=1013)
            return
        metrics.sessions.labels("phone").inc()
        try:
            await run_phone_call(websocket, start, websocket.app.state.runtime, record_turn)
        except Exception:
            logger.exception(f"twilio: call {start.call_sid} failed")
        finally:
            slots.release()
            metrics.sessions.labels("phone").dec()
