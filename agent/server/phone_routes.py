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


class CarrierRoutes:
    """One carrier's webhook, answering-machine and media stream routes (see the module docstring), on its bridge."""

    def __init__(
        self, bridge: Bridge, settings: Settings, slots: PhoneSlots, metrics: TurnMetrics, record_turn: TurnListener
    ) -> None:
        self._bridge = bridge
        self._gate: CarrierGate = bridge.gate
        self._name = bridge.name
        self._settings = settings
        self._slots = slots
        self._metrics = metrics
        self._record_turn = record_turn

    def add_to(self, app: FastAPI) -> None:
        voice, stream = f"/{self._name}/voice", f"/{self._name}/stream"
        for path in (voice, voice + "/{instance}"):
            app.add_api_route(path, self.call_webhook, methods=["POST"])
        app.add_api_route(f"/{self._name}/amd", self.machine_detected, methods=["POST"])
        for path in (stream, stream + "/{instance}"):
            app.add_api_websocket_route(path, self.media_stream)
        if self._bridge.add_routes:
            self._bridge.add_routes(app)

    async def call_webhook(self, request: Request) -> Response:
        """The call's answer document, once its slot is reserved; the carrier's busy answer when there is none."""
        gate, slots = self._gate, self._slots
        form = await gate.webhook(request)  # GateRefused: answered with its status (carriers.py)
        call_id, dial_id = gate.call_id(form), request.query_params.get("dial")
        outbound = slots.outbound(dial_id)
        if not outbound and not slots.reserve_incoming(call_id):
            return Response(self._bridge.busy, media_type=XML)
        parameters = gate.stream_parameters(call_id, dial_id if outbound else None)
        stream_url = gate.stream_url(request, f"/{self._name}/stream/{self._settings.instance}")  # routed back here
        return Response(self._bridge.answer(stream_url, parameters, form), media_type=XML)

    async def machine_detected(self, request: Request) -> Response:
        """An outbound call's answering-machine result: voicemail left, or a fax hung up on."""
        name, settings = self._name, self._settings
        form = await self._gate.webhook(request)
        action, call_id = self._bridge.machine_action(form), self._gate.call_id(form)
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

    async def media_stream(self, websocket: WebSocket) -> None:
        """Admit a carrier's stream (one live stream per call), claim its slot, and run the call to its end."""
        opening = await self._gate.admit_stream(websocket)
        if opening is None:
            return
        if not self._slots.begin_stream(opening):
            self._gate.refuse("second_stream", f"a second stream for call {opening.call_id}, whose stream is live")
            await websocket.close(code=1008)
            return
        try:
            await self._run_call(websocket, opening)
        finally:
            self._slots.end_stream(opening)

    async def _run_call(self, websocket: WebSocket, opening: StreamOpening) -> None:
        """Claim the admitted stream's slot and run its call to the end (in a worker process)."""
        slot = self._slots.claim(opening)
        if slot is None:  # only a stream that no webhook of ours reserved
            logger.warning(f"{self._name}: no room for unannounced call {opening.call_id}; closing the stream")
            await websocket.close(code=1013)
            return
        with slot:
            try:
                call = PhoneCall(opening, slot.greeting)
                on_violation = self._metrics.disconnect_counter("phone")
                await websocket.app.state.calls.run_phone(websocket, call, self._record_turn, on_violation)
            except Exception:
                logger.exception(f"{self._name}: call {opening.call_id} failed")
