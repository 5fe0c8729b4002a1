"""The Plivo bridge (`POST /plivo/voice`, `WS /plivo/stream`, `POST /plivo/amd`): the shared phone routes
(`agent/server/phone_routes.py`) with Plivo's gate (`gate.py`) and answer XML, and the two documents
Plivo fetches when the call is redirected through its transfer API (signed like every Plivo request):

- `POST /plivo/transfer?to=<number>`: `<Dial>` to the number, which must pass DIAL_ALLOWLIST;
- `POST /plivo/voicemail`: wait for the answering machine's beep, then say VOICEMAIL_MESSAGE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from xml.sax.saxutils import escape, quoteattr

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from agent.settings import Settings, number_allowed
from agent.telephony.bridge import XML, Bridge, MachineAction
from agent.telephony.markup import XML_HEADER
from agent.telephony.plivo.gate import PlivoGate
from agent.telephony.plivo.rest import TRANSFER_PATH, VOICEMAIL_PATH
from agent.telephony.plivo.stream import CONTENT_TYPE, extra_headers
from agent.telephony.tokens import StreamTokens

BEEP_WAIT_S = 30  # the longest a voicemail greeting is waited for


def answer_xml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """The answer XML that connects a call to our stream, both ways, mu-law 8 kHz; `parameters` as extraHeaders."""
    extra = extra_headers(parameters)
    attributes = f" extraHeaders={quoteattr(extra)}" if extra else ""
    return (
        f'{XML_HEADER}<Response><Stream bidirectional="true" keepCallAlive="true" '
        f"contentType={quoteattr(CONTENT_TYPE)}{attributes}>{escape(stream_url)}</Stream></Response>"
    )


def dial_xml(number: str) -> str:
    return f"{XML_HEADER}<Response><Dial><Number>{escape(number.removeprefix('+'))}</Number></Dial></Response>"


def voicemail_xml(message: str, wait_s: int) -> str:
    """Wait for the answering machine's beep (at most `wait_s`), then say `message`; the call ends after it."""
    return f'{XML_HEADER}<Response><Wait length="{wait_s}" beep="true"/><Speak>{escape(message)}</Speak></Response>'


def hangup_xml(reason: str = "busy") -> str:
    """Decline the call before it is answered (the first element): the caller hears a busy tone (or "rejected")."""
    return f"{XML_HEADER}<Response><Hangup reason={quoteattr(reason)}/></Response>"


def machine_action(form: FormData) -> MachineAction:
    """Plivo's asynchronous machine detection says only that a machine answered: leave the message (the voicemail
    XML waits for the beep first)."""
    return "voicemail" if form.get("Machine") == "true" else None


def answer(stream_url: str, parameters: dict[str, str], form: FormData) -> str:
    return answer_xml(stream_url, parameters)


def plivo_bridge(settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None]) -> Bridge:
    gate = PlivoGate(settings, tokens, on_refused)

    def add_documents(app: FastAPI) -> None:
        @app.post(TRANSFER_PATH)
        async def transfer_document(request: Request) -> Response:
            number = request.query_params.get("to", "")
            await gate.webhook(request)
            if not number_allowed(number, settings.dial_prefixes):
                raise gate.refuse("dial_allowlist", f"a transfer to {number[:20]!r}, not in DIAL_ALLOWLIST")
            return Response(dial_xml(number), media_type=XML)

        @app.post(VOICEMAIL_PATH)
        async def voicemail_document(request: Request) -> Response:
            await gate.webhook(request)
            return Response(voicemail_xml(settings.voicemail_message, BEEP_WAIT_S), media_type=XML)

    return Bridge(gate, answer, hangup_xml("busy"), machine_action, add_routes=add_documents)
