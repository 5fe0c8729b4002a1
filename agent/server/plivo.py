"""The Plivo bridge's routes: the shared phone routes (`phone_routes.py`: `POST /plivo/voice`, `WS /plivo/stream`,
`POST /plivo/amd`) with Plivo's gate (`agent/telephony/plivo_admission.py`) and answer XML, and the two documents
Plivo fetches when the call is redirected through its transfer API (signed like every Plivo request):

- `POST /plivo/transfer?to=<number>`: `<Dial>` to the number, which must pass DIAL_ALLOWLIST;
- `POST /plivo/voicemail`: wait for the answering machine's beep, then say VOICEMAIL_MESSAGE.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from agent.latency.observer import TurnListener
from agent.server.metrics import TurnMetrics
from agent.server.phone_routes import XML, Bridge, MachineAction, add_phone_routes
from agent.server.phone_slots import PhoneSlots
from agent.settings import Settings, number_allowed
from agent.telephony import plivo
from agent.telephony.admission import AdmissionRefused, StreamTokens
from agent.telephony.plivo_admission import PlivoAdmission
from agent.telephony.plivo_rest import TRANSFER_PATH, VOICEMAIL_PATH

BEEP_WAIT_S = 30  # the longest a voicemail greeting is waited for


def machine_action(form: FormData) -> MachineAction:
    """Plivo's asynchronous machine detection says only that a machine answered: leave the message (the voicemail
    XML waits for the beep first)."""
    return "voicemail" if form.get("Machine") == "true" else None


def add_plivo_routes(
    app: FastAPI,
    settings: Settings,
    slots: PhoneSlots,
    metrics: TurnMetrics,
    record_turn: TurnListener,
    tokens: StreamTokens,
) -> None:
    admission = PlivoAdmission(settings, tokens, metrics.refusal_counter("phone"))

    def answer(stream_url: str, parameters: dict[str, str], form: FormData) -> str:
        return plivo.answer_xml(stream_url, parameters)

    bridge = Bridge(admission, answer=answer, busy=plivo.speak_xml, machine_action=machine_action)
    add_phone_routes(app, bridge, settings, slots, metrics, record_turn)

    @app.post(TRANSFER_PATH)
    async def transfer_xml(request: Request) -> Response:
        number = request.query_params.get("to", "")
        try:
            await admission.webhook(request)
            if not number_allowed(number, settings.dial_prefixes):
                raise admission.refuse("dial_allowlist", f"a transfer to {number[:20]!r}, not in DIAL_ALLOWLIST")
        except AdmissionRefused as refused:
            return Response(str(refused), status_code=refused.status)
        return Response(plivo.dial_xml(number), media_type=XML)

    @app.post(VOICEMAIL_PATH)
    async def voicemail_xml(request: Request) -> Response:
        try:
            await admission.webhook(request)
        except AdmissionRefused as refused:
            return Response(str(refused), status_code=refused.status)
        return Response(plivo.voicemail_xml(settings.voicemail_message, BEEP_WAIT_S), media_type=XML)
