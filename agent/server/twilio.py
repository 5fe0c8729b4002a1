"""The phone bridge's HTTP side: Twilio's incoming-call webhook (TwiML that connects the call to our stream, or
rejects it as busy) and the Media Streams websocket, which hands each admitted call to a worker (or, with
`WORKERS=0`, to `pipelines/phone.py` in this process).

The webhook reserves the call's slot (`admission.py`), so the stream that follows is never refused. Its stream URL
names this instance (`/twilio/stream/<INSTANCE_NAME>`) so that a load balancer can route the stream to the server
holding the reservation (see deploy/haproxy.cfg)."""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from loguru import logger

from agent.latency.observer import TurnListener
from agent.protocols.twilio import (
    TwilioProtocolError,
    connect_stream_twiml,
    read_stream_start,
    reject_twiml,
    signature_valid,
)
from agent.server.admission import Admission
from agent.server.calls import RecordedReceive
from agent.settings import Settings

TWIML = "application/xml"


def add_twilio_routes(app: FastAPI, settings: Settings, admission: Admission, record_turn: TurnListener) -> None:
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
        if not admission.reserve(form.get("CallSid", "")):
            return Response(reject_twiml("busy"), media_type=TWIML)  # the caller hears busy and is not billed
        base = public or f"{request.url.scheme}://{request.url.netloc}"
        stream_url = (
            base.replace("https://", "wss://").replace("http://", "ws://") + f"/twilio/stream/{settings.instance}"
        )
        parameters = {k: form[k] for k in ("From", "To", "CallSid") if k in form}
        return Response(connect_stream_twiml(stream_url, parameters), media_type=TWIML)

    @app.websocket("/twilio/stream")
    @app.websocket("/twilio/stream/{instance}")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        opening = RecordedReceive(websocket)
        try:
            start = await read_stream_start(cast(WebSocket, opening))
        except (TwilioProtocolError, TimeoutError) as e:
            logger.warning(f"twilio: closing a stream that did not start properly: {e or 'no start in time'}")
            await websocket.close(code=1008)
            return
        slot = admission.claim(start.call_sid)
        if slot is None:  # only a stream that no webhook of ours reserved
            logger.warning(f"twilio: no room for unannounced call {start.call_sid}; closing the stream")
            await websocket.close(code=1013)
            return
        with slot:
            try:
                await websocket.app.state.calls.run_phone(websocket, start, opening.texts, record_turn)
            except Exception:
                logger.exception(f"twilio: call {start.call_sid} failed")
