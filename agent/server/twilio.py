"""The phone bridge's HTTP side: Twilio's incoming-call webhook (TwiML that connects the call to our stream, or
rejects it as busy) and the Media Streams websocket, which hands each admitted call to a worker (or, with
`WORKERS=0`, to `pipelines/phone.py` in this process). Who gets in is decided by
`agent/telephony/twilio_admission.py`; whether there is room, by `admission.py`.

The webhook reserves the call's slot, so the stream that follows is never refused for lack of room. Its stream URL
names this instance (`/twilio/stream/<INSTANCE_NAME>`) so that a load balancer can route the stream to the server
holding the reservation (see deploy/haproxy.cfg)."""

from __future__ import annotations

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from loguru import logger

from agent.latency.observer import TurnListener
from agent.server.admission import Admission
from agent.server.metrics import TurnMetrics
from agent.settings import Settings
from agent.telephony.admission import AdmissionRefused
from agent.telephony.twilio import connect_stream_twiml, reject_twiml
from agent.telephony.twilio_admission import STREAM_PATH, TwilioAdmission

TWIML = "application/xml"


def add_twilio_routes(
    app: FastAPI, settings: Settings, admission: Admission, metrics: TurnMetrics, record_turn: TurnListener
) -> None:
    twilio = TwilioAdmission.from_settings(settings, on_refused=metrics.refusal_counter("phone"))

    @app.post("/twilio/voice")
    async def incoming_call(request: Request) -> Response:
        try:
            form = await twilio.webhook_form(request)
        except AdmissionRefused as refused:
            return Response(str(refused), status_code=refused.status)
        if not admission.reserve(str(form["CallSid"])):
            return Response(reject_twiml("busy"), media_type=TWIML)  # the caller hears busy and is not billed
        stream_url = f"{twilio.stream_url(request)}/{settings.instance}"  # routed back here by a load balancer
        return Response(connect_stream_twiml(stream_url, twilio.stream_parameters(form)), media_type=TWIML)

    @app.websocket(STREAM_PATH)
    @app.websocket(STREAM_PATH + "/{instance}")
    async def media_stream(websocket: WebSocket) -> None:
        start = await twilio.admit_stream(websocket)
        if start is None:
            return
        slot = admission.claim(start.call_sid)
        if slot is None:  # only a stream that no webhook of ours reserved
            logger.warning(f"twilio: no room for unannounced call {start.call_sid}; closing the stream")
            await websocket.close(code=1013)
            return
        with slot:
            try:
                await websocket.app.state.calls.run_phone(
                    websocket, start, record_turn, metrics.disconnect_counter("phone")
                )
            except Exception:
                logger.exception(f"twilio: call {start.call_sid} failed")
