"""The HTTP side every carrier's bridge shares, one design for all:

- `POST /<carrier>/voice`: the call webhook (incoming calls, and outbound calls as they are answered:
  `/<carrier>/voice/<INSTANCE_NAME>?dial=<id>`), checked by the carrier's gate, answered with the document that
  connects the call to `/<carrier>/stream/<INSTANCE_NAME>` once its slot is reserved (`phone_slots.py`), or with the
  carrier's busy rejection (the caller hears busy and nobody is billed). The instance in the URLs lets a load
  balancer send the stream (and an outbound call's webhook) to the server holding the reservation;
- `WS /<carrier>/stream[/<instance>]`: the media stream, admitted by the gate, given its reserved slot, then run by
  a worker process (`workers.py`; in this process with `WORKERS=0`: `pipelines/phone.py`);
- `POST /<carrier>/amd`: the carrier's answering-machine result for an outbound call: at the end of a machine's
  greeting the call is redirected to leave VOICEMAIL_MESSAGE and hang up (a fax is hung up on, a person talks on
  with the agent). The redirect goes through the REST API, so any process can act on it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response
from loguru import logger

from agent.latency.observer import TurnListener
from agent.server.calls import PhoneCall
from agent.server.metrics import TurnMetrics
from agent.server.phone_slots import PhoneSlots
from agent.settings import Settings
from agent.telephony.bridge import XML, Bridge
from agent.telephony.gate import CarrierGate, StreamOpening
from agent.telephony.registry import CARRIERS
from agent.telephony.rest import CarrierError


def add_phone_routes(
    app: FastAPI,
    bridge: Bridge,
    settings: Settings,
    slots: PhoneSlots,
    metrics: TurnMetrics,
    record_turn: TurnListener,
) -> None:
    gate, name = bridge.gate, bridge.name
    stream_path = f"/{name}/stream"

    @app.post(f"/{name}/voice")
    @app.post(f"/{name}/voice/{{instance}}")
    async def call_webhook(request: Request) -> Response:
        form = await gate.webhook(request)  # GateRefused: answered with its status (carriers.py)
        call_id, dial_id = gate.call_id(form), request.query_params.get("dial")
        outbound = slots.outbound(dial_id)
        if not outbound and not slots.reserve_incoming(call_id):
            return Response(bridge.busy, media_type=XML)
        parameters = gate.stream_parameters(call_id, dial_id if outbound else None)
        stream_url = gate.stream_url(request, f"{stream_path}/{settings.instance}")  # routed back here
        return Response(bridge.answer(stream_url, parameters, form), media_type=XML)

    @app.post(f"/{name}/amd")
    async def machine_detected(request: Request) -> Response:
        form = await gate.webhook(request)
        action, call_id = bridge.machine_action(form), gate.call_id(form)
        api = CARRIERS[name].api(settings)
        logger.info(f"{name}: machine detection on call {call_id}: {action or 'a person, the agent talks on'}")
        if action and api:
            try:
                if action == "voicemail":
                    await api.leave_voicemail(call_id, settings.voicemail_message)
                else:
                    await api.hang_up(call_id)
            except CarrierError as e:
                logger.error(f"{name}: {action} on call {call_id} failed: {e}")
        return Response(status_code=204)

    @app.websocket(stream_path)
    @app.websocket(stream_path + "/{instance}")
    async def media_stream(websocket: WebSocket) -> None:
        await run_admitted_stream(websocket, gate, slots, metrics, record_turn)

    if bridge.add_routes:
        bridge.add_routes(app)


async def run_admitted_stream(
    websocket: WebSocket, gate: CarrierGate, slots: PhoneSlots, metrics: TurnMetrics, record_turn: TurnListener
) -> None:
    """Admit a carrier's stream (one live stream per call), claim its slot, and run the call to its end."""
    opening = await gate.admit_stream(websocket)
    if opening is None:
        return
    if not slots.begin_stream(opening):
        gate.refuse("second_stream", f"a second stream for call {opening.call_id}, whose stream is live")
        await websocket.close(code=1008)
        return
    try:
        await run_call(websocket, opening, gate, slots, metrics, record_turn)
    finally:
        slots.end_stream(opening)


async def run_call(
    websocket: WebSocket,
    opening: StreamOpening,
    gate: CarrierGate,
    slots: PhoneSlots,
    metrics: TurnMetrics,
    record_turn: TurnListener,
) -> None:
    """Claim the admitted stream's slot and run its call to the end (in a worker process)."""
    slot = slots.claim(opening)
    if slot is None:  # only a stream that no webhook of ours reserved
        logger.warning(f"{gate.carrier}: no room for unannounced call {opening.call_id}; closing the stream")
        await websocket.close(code=1013)
        return
    with slot:
        try:
            call = PhoneCall(opening, slot.greeting)
            await websocket.app.state.calls.run_phone(websocket, call, record_turn, metrics.disconnect_counter("phone"))
        except Exception:
            logger.exception(f"{gate.carrier}: call {opening.call_id} failed")
