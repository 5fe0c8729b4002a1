"""Local doubles of the carriers' REST APIs (Twilio 2010-04-01, Telnyx v2 TeXML and Call Control, Plivo v1), real
HTTP servers on 127.0.0.1 that check every request as the carrier documents it (path, method, auth, content type,
parameter names, types and values) and answer as the carrier does. A request they would refuse is answered with
the carrier's error status and recorded in `errors`, which every test expects empty.

They also act as the carrier on the phone side: an outbound call they are asked to place is answered by a callee
(a recording, through `agent/phone_client.py` speaking that carrier's protocol: the answer webhook, signed, then
the stream), they post the answering-machine result when told to, and a call they redirect (transfer, voicemail)
or hang up has its stream ended as the carrier ends it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.phone_client import PhoneCallResult, place_call
from agent.settings import E164
from agent.telephony.dialect import CallIds, Dialect
from bench.serving import RunningServer, serving

TWILIO_SID = "AC" + "a" * 32
TWILIO_TOKEN = "twilio-auth-token-of-the-test-account"
TELNYX_KEY = "KEY0123456789ABCDEF_telnyx-api-key"
TELNYX_ACCOUNT = "3e6f995f-85f7-4705-9741-53b116d28237"
TELNYX_APP = "1773070540731319841"
PLIVO_ID = "MAZDQ1ZDI3MZAXN2Y3ND"
PLIVO_TOKEN = "plivo-auth-token-of-the-test-account"


@dataclass
class CarrierCall:
    """One call the double knows: its ids, the event that ends its stream as the carrier would, what the callee
    heard (outbound), and the documents (TwiML, TeXML, Plivo XML) the call was redirected to."""

    ids: CallIds
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    documents: list[str] = field(default_factory=list)
    hung_up: bool = False
    result: PhoneCallResult | None = None
    task: asyncio.Task | None = None


class CarrierDouble:
    """The shared part: recorded requests, refusals, calls, and the callee that answers outbound calls."""

    carrier = ""

    def __init__(self, make_dialect: Callable[[], Dialect]) -> None:
        self.make_dialect = make_dialect
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.calls: dict[str, CarrierCall] = {}
        self.callee_wav: Path | None = None
        self.answered_by: str | None = None  # the machine-detection result to post, if asked for
        self.amd_after_s = 1.5
        self.server: RunningServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server
        return self.server.http

    def register(self, ids: CallIds) -> CarrierCall:
        """A call placed to our server (inbound): the double can then redirect or hang it up."""
        self.calls[ids.call_id] = CarrierCall(ids)
        return self.calls[ids.call_id]

    def refuse(self, status: int, message: str) -> Response:
        self.errors.append(message)
        return JSONResponse({"error": message}, status_code=status)

    def record(self, request: Request, body: Any) -> None:
        self.requests.append({"method": request.method, "path": request.url.path, "body": body})

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise Refused(message)

    def answer(self, ids: CallIds, answer_url: str, machine_url: str | None, amd_form: dict[str, str]) -> CarrierCall:
        """Ring the callee: it answers (our answer webhook, then the stream), and the machine detection reports."""
        call = self.register(ids)
        assert self.callee_wav, "the test sets callee_wav before dialling"

        async def report_machine(dialect: Dialect, url: str) -> None:
            await asyncio.sleep(self.amd_after_s)
            response = await dialect.post(url, amd_form)
            self.check(response.status_code < 300, f"the machine-detection callback answered {response.status_code}")

        async def ring() -> None:
            dialect = self.make_dialect()
            detection = None
            if machine_url and self.answered_by:
                detection = asyncio.create_task(report_machine(self.make_dialect(), machine_url))
            call.result = await place_call(
                self.callee_wav, answer_url, dialect=dialect, ids=ids, direction="outbound", hang_up=call.ended,
                tail_s=1.5,
            )  # fmt: skip
            if detection:
                await detection

        call.task = asyncio.create_task(ring())
        return call

    def end(self, call_id: str, document: str | None) -> CarrierCall | None:
        call = self.calls.get(call_id)
        if call is not None:
            if document is None:
                call.hung_up = True
            else:
                call.documents.append(document)
            call.ended.set()
        return call

    async def finish(self) -> None:
        tasks = [c.task for c in self.calls.values() if c.task]
        await asyncio.gather(*tasks, return_exceptions=True)

    def routes(self) -> list[Route]:
        raise NotImplementedError

    @asynccontextmanager
    async def running(self):
        async def refused(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, Refused)
            return self.refuse(exc.status, str(exc))

        app = Starlette(routes=self.routes(), exception_handlers={Refused: refused})
        async with serving(app) as server:
            self.server = server
            try:
                yield self
            finally:
                await self.finish()


class Refused(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def basic_auth(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme != "Basic":
        raise Refused("no HTTP Basic auth", 401)
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password


async def form_of(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
        raise Refused(f"{request.url.path}: expected a form, got {request.headers.get('content-type')}", 415)
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


async def json_of(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0] != "application/json":
        raise Refused(f"{request.url.path}: expected JSON, got {request.headers.get('content-type')}", 415)
    body = json.loads(await request.body() or b"null")
    if not isinstance(body, dict):
        raise Refused(f"{request.url.path}: the body is not a JSON object")
    return body


def only(body: dict[str, Any], required: set[str], optional: set[str]) -> None:
    missing, unknown = required - set(body), set(body) - required - optional
    if missing or unknown:
        raise Refused(f"missing {sorted(missing)}, unknown {sorted(unknown)}")


def valid_xml(text: str) -> str:
    ElementTree.fromstring(text)
    return text


# -- Twilio ----------------------------------------------------------------------------------------
class TwilioDouble(CarrierDouble):
    """Twilio's REST API 2010-04-01: Basic auth (account SID, auth token), form parameters, JSON answers."""

    carrier = "twilio"

    def routes(self) -> list[Route]:
        base = "/2010-04-01/Accounts/{account}/Calls"
        return [Route(base + ".json", self.create, methods=["POST"]),
                Route(base + "/{sid}.json", self.update, methods=["POST"])]  # fmt: skip

    def authorized(self, request: Request) -> None:
        user, password = basic_auth(request)
        if (user, password) != (TWILIO_SID, TWILIO_TOKEN) or request.path_params["account"] != TWILIO_SID:
            raise Refused("authentication failed", 401)

    async def create(self, request: Request) -> Response:
        self.authorized(request)
        form = await form_of(request)
        self.record(request, form)
        amd = {"MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback", "AsyncAmdStatusCallbackMethod"}
        only(form, {"To", "From", "Url"}, {"Method", "Timeout"} | amd)
        self.check(bool(E164.fullmatch(form["To"]) and E164.fullmatch(form["From"])), "To and From must be E.164")
        self.check(form.get("Method", "POST") in ("GET", "POST"), "Method is GET or POST")
        self.check(form.get("Timeout", "60").isdigit() and 5 <= int(form.get("Timeout", "60")) <= 600, "Timeout")
        machine_url = None
        if "MachineDetection" in form:
            self.check(form["MachineDetection"] in ("Enable", "DetectMessageEnd"), "MachineDetection value")
            self.check(form.get("AsyncAmd") in ("true", "false"), "AsyncAmd is true or false")
            self.check(form.get("AsyncAmdStatusCallbackMethod", "POST") in ("GET", "POST"), "callback method")
            machine_url = form.get("AsyncAmdStatusCallback")
        ids = self.make_dialect().new_ids()
        amd_form = {"AccountSid": TWILIO_SID, "CallSid": ids.call_id, "AnsweredBy": self.answered_by or "",
                    "MachineDetectionDuration": "2500"}  # fmt: skip
        self.answer(ids, form["Url"], machine_url, amd_form)
        resource = {
            "sid": ids.call_id,
            "account_sid": TWILIO_SID,
            "to": form["To"],
            "from": form["From"],
            "status": "queued",
            "uri": f"/2010-04-01/Accounts/{TWILIO_SID}/Calls/{ids.call_id}.json",
        }
        return JSONResponse(resource, status_code=201)  # fmt: skip

    async def update(self, request: Request) -> Response:
        self.authorized(request)
        form = await form_of(request)
        self.record(request, form)
        only(form, set(), {"Status", "Twiml", "Url", "Method"})
        self.check(len(form) == 1, "one of Status, Twiml or Url")
        self.check(form.get("Status", "completed") in ("completed", "canceled"), "Status is completed or canceled")
        sid = request.path_params["sid"]
        self.check(bool(re.fullmatch(r"CA[0-9a-f]{32}", sid)), "a call SID")
        self.end(sid, valid_xml(form["Twiml"]) if "Twiml" in form else None)
        return JSONResponse({"sid": sid, "account_sid": TWILIO_SID, "status": "in-progress"})


# -- Telnyx ----------------------------------------------------------------------------------------
class TelnyxDouble(CarrierDouble):
    """Telnyx API v2: `Authorization: Bearer <API key>`; TeXML calls (JSON to create, a form to update) and Call
    Control commands (JSON)."""

    carrier = "telnyx"

    def routes(self) -> list[Route]:
        calls = "/v2/texml/Accounts/{account}/Calls"
        return [
            Route(calls, self.create, methods=["POST"]),
            Route(calls + "/{sid}", self.update, methods=["POST"]),
            Route("/v2/calls/{call_control_id}/actions/{action}", self.command, methods=["POST"]),
        ]

    def authorized(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {TELNYX_KEY}":
            raise Refused("authentication failed", 401)
        if "account" in request.path_params and request.path_params["account"] != TELNYX_ACCOUNT:
            raise Refused("no such account", 404)

    async def create(self, request: Request) -> Response:
        self.authorized(request)
        body = await json_of(request)
        self.record(request, body)
        amd = {"MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback", "AsyncAmdStatusCallbackMethod"}
        only(body, {"ApplicationSid", "To", "From"}, {"Url", "UrlMethod", "Timeout"} | amd)
        self.check(body["ApplicationSid"] == TELNYX_APP, "ApplicationSid is the TeXML application")
        self.check(bool(E164.fullmatch(body["To"]) and E164.fullmatch(body["From"])), "To and From are E.164")
        self.check(body.get("UrlMethod", "POST") in ("GET", "POST"), "UrlMethod is GET or POST")
        self.check(isinstance(body.get("Timeout", 30), int), "Timeout is an integer")
        machine_url = None
        if "MachineDetection" in body:
            self.check(body["MachineDetection"] in ("Enable", "Disable", "DetectMessageEnd"), "MachineDetection")
            self.check(isinstance(body.get("AsyncAmd"), bool), "AsyncAmd is a boolean")
            self.check(body.get("AsyncAmdStatusCallbackMethod", "POST") in ("GET", "POST"), "callback method")
            machine_url = body.get("AsyncAmdStatusCallback")
        ids = self.make_dialect().new_ids()
        amd_form = {
            "AccountSid": TELNYX_ACCOUNT,
            "AnsweredBy": self.answered_by or "",
            "CallSid": ids.call_id,
            "CallSidLegacy": ids.call_id,
            "ConnectionId": "1234567890",
            "MachineDetectionDuration": "2500",
        }
        self.answer(ids, body["Url"], machine_url, amd_form)  # fmt: skip
        return JSONResponse({"from": body["From"], "to": body["To"], "status": "queued"})

    async def update(self, request: Request) -> Response:
        self.authorized(request)
        form = await form_of(request)
        self.record(request, form)
        only(form, set(), {"Status", "Texml", "Url", "Method", "FallbackUrl", "FallbackMethod", "StatusCallback"})
        sid = request.path_params["sid"]
        call = self.end(sid, valid_xml(form["Texml"]) if "Texml" in form else None)
        if call is None:
            raise Refused(f"no call {sid}", 404)
        return JSONResponse({"account_sid": TELNYX_ACCOUNT, "sid": sid, "status": "in-progress"})

    async def command(self, request: Request) -> Response:
        self.authorized(request)
        body = await json_of(request)
        self.record(request, body)
        action, call_id = request.path_params["action"], request.path_params["call_control_id"]
        if action == "hangup":
            only(body, set(), {"client_state", "command_id"})
            document = None
        elif action == "transfer":
            only(body, {"to"}, {"from", "client_state", "command_id", "timeout_secs", "audio_url"})
            self.check(bool(E164.fullmatch(body["to"])), "to is an E.164 number")
            document = f"transfer to {body['to']}"
        else:
            raise Refused(f"the double knows no {action!r} command", 404)
        if self.end(call_id, document) is None:
            body = {"errors": [{"code": "90018", "title": "Call has already ended"}]}
            return JSONResponse(body, status_code=422)
        return JSONResponse({"data": {"result": "ok"}})


# -- Plivo -----------------------------------------------------------------------------------------
class PlivoDouble(CarrierDouble):
    """Plivo API v1: Basic auth (auth ID, auth token), JSON bodies, paths under /v1/Account/{auth_id}/ with a
    trailing slash. A transfer makes the double fetch the `aleg_url` XML as Plivo does (a signed POST)."""

    carrier = "plivo"

    def routes(self) -> list[Route]:
        base = "/v1/Account/{auth_id}/Call/"
        return [Route(base, self.create, methods=["POST"]),
                Route(base + "{uuid}/", self.call, methods=["POST", "DELETE"])]  # fmt: skip

    def authorized(self, request: Request) -> None:
        if basic_auth(request) != (PLIVO_ID, PLIVO_TOKEN) or request.path_params["auth_id"] != PLIVO_ID:
            raise Refused("authentication failed", 401)

    async def create(self, request: Request) -> Response:
        self.authorized(request)
        body = await json_of(request)
        self.record(request, body)
        amd = {"machine_detection", "machine_detection_url", "machine_detection_method"}
        only(body, {"from", "to", "answer_url"}, {"answer_method", "ring_timeout"} | amd)
        self.check(all(re.fullmatch(r"[1-9][0-9]{7,14}", body[k]) for k in ("from", "to")), "from/to: digits")
        self.check(body.get("answer_method", "POST") in ("GET", "POST"), "answer_method is GET or POST")
        self.check(isinstance(body.get("ring_timeout", 120), int), "ring_timeout is an integer")
        machine_url = None
        if "machine_detection" in body:
            self.check(body["machine_detection"] in ("true", "hangup"), "machine_detection is true or hangup")
            self.check(body.get("machine_detection_method", "POST") in ("GET", "POST"), "callback method")
            machine_url = body.get("machine_detection_url")
        ids, request_uuid = self.make_dialect().new_ids(), str(uuid.uuid4())
        machine = (self.answered_by or "").startswith("machine")
        amd_form = {"From": body["from"], "To": body["to"], "Machine": "true" if machine else "false",
                    "RequestUUID": request_uuid, "ALegRequestUUID": request_uuid, "CallUUID": ids.call_id,
                    "ALegUUID": ids.call_id, "IfMachine": "continue", "Direction": "outbound",
                    "Event": "MachineDetection", "CallStatus": "in-progress"}  # fmt: skip
        self.answer(ids, body["answer_url"], machine_url, amd_form)
        answer = {"message": "call fired", "request_uuid": request_uuid, "api_id": str(uuid.uuid4())}
        return JSONResponse(answer, status_code=201)

    async def call(self, request: Request) -> Response:
        self.authorized(request)
        call_uuid = request.path_params["uuid"]
        if request.method == "DELETE":
            self.record(request, None)
            return Response(status_code=204 if self.end(call_uuid, None) else 404)
        body = await json_of(request)
        self.record(request, body)
        only(body, {"legs", "aleg_url"}, {"aleg_method"})
        self.check(body["legs"] == "aleg" and body.get("aleg_method", "POST") == "POST", "legs aleg, POST")
        call = self.calls.get(call_uuid)
        if call is None:
            raise Refused(f"no call {call_uuid}", 404)
        form = {"CallUUID": call_uuid, "Direction": "inbound", "CallStatus": "in-progress", "Event": "Redirect"}
        response = await self.make_dialect().post(body["aleg_url"], form)  # Plivo fetches the new XML
        self.check(response.status_code == 200, f"the aleg_url answered {response.status_code}")
        self.end(call_uuid, valid_xml(response.text))
        return JSONResponse({"message": "call transferred", "api_id": str(uuid.uuid4())}, status_code=202)
