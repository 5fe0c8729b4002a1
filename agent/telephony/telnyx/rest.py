"""Telnyx's REST API (v2), as documented: `Authorization: Bearer <API key>`.

- hang up: the Call Control command `POST /calls/{call_control_id}/actions/hangup` (JSON);
- transfer: the Call Control command `POST /calls/{call_control_id}/actions/transfer` with `{"to": number}`;
- voicemail: the TeXML call update `POST /texml/Accounts/{account_sid}/Calls/{call_sid}` with the form field
  `Texml` (`<Say>` the message, `<Hangup/>`);
- outbound: `POST /texml/Accounts/{account_sid}/Calls` (JSON, CamelCase keys) with `ApplicationSid`, `To`, `From`,
  `Url` (our answer webhook), `Timeout`, and asynchronous answering-machine detection (`MachineDetection:
  DetectMessageEnd`, `AsyncAmd: true`, `AsyncAmdStatusCallback`).

A TeXML call's CallSid is its call control id, so the Call Control commands act on TeXML calls too.
"""

from __future__ import annotations

from typing import Any

from agent.telephony.markup import say_and_hang_up
from agent.telephony.rest import CarrierError, Outbound, RestClient, segment

TELNYX_API = "https://api.telnyx.com/v2"


class TelnyxApi:
    """Telnyx call control for one API key (and, for TeXML calls and updates, one account and application)."""

    carrier = "telnyx"

    def __init__(self, api_key: str, *, account_sid: str = "", application_id: str = "", base_url: str = "") -> None:
        self._rest = RestClient(self.carrier, base_url or TELNYX_API, bearer=api_key)
        self._account_sid = account_sid
        self._application_id = application_id

    async def _command(self, call_id: str, action: str, body: dict[str, Any]) -> None:
        await self._rest.request("POST", f"/calls/{segment(call_id)}/actions/{action}", json=body, ok=(200,))

    async def hang_up(self, call_id: str) -> None:
        await self._command(call_id, "hangup", {})

    async def transfer(self, call_id: str, number: str) -> None:
        await self._command(call_id, "transfer", {"to": number})

    def _calls_path(self) -> str:
        if not self._account_sid:
            raise CarrierError("telnyx: TELNYX_ACCOUNT_SID is not set (TeXML calls live under the account)")
        return f"/texml/Accounts/{segment(self._account_sid)}/Calls"

    async def leave_voicemail(self, call_id: str, message: str) -> None:
        path = f"{self._calls_path()}/{segment(call_id)}"
        await self._rest.request("POST", path, data={"Texml": say_and_hang_up(message)}, ok=(200,))

    async def dial(self, call: Outbound) -> str:
        if not self._application_id:
            raise CarrierError("telnyx: TELNYX_APPLICATION_ID is not set (outbound TeXML calls need the application)")
        body: dict[str, Any] = {
            "ApplicationSid": self._application_id,
            "To": call.to,
            "From": call.from_number,
            "Url": call.answer_url,
            "UrlMethod": "POST",
            "Timeout": round(call.timeout_s),
        }
        if call.machine_url:
            body |= {
                "MachineDetection": "DetectMessageEnd",
                "AsyncAmd": True,
                "AsyncAmdStatusCallback": call.machine_url,
                "AsyncAmdStatusCallbackMethod": "POST",
            }
        await self._rest.request("POST", self._calls_path(), json=body, ok=(200, 201))
        return ""  # Telnyx answers with the call's from, to and status only: the dial id is our reference
