"""Plivo's REST API (v1), as documented: HTTP Basic auth with the auth ID and token, JSON bodies, every path under
`/v1/Account/{auth_id}/` and ending in a slash.

- hang up: `DELETE /Call/{call_uuid}/` (204);
- transfer: `POST /Call/{call_uuid}/` with `legs: "aleg"`, `aleg_url`, `aleg_method` (202): Plivo fetches the XML at
  `aleg_url` (ours: `<Dial><Number>`) and runs it on the call, ending the stream;
- voicemail: the same transfer to our voicemail XML (`<Wait beep="true">` until the machine's beep, then `<Speak>`);
- outbound: `POST /Call/` with `from`, `to` (country code and number, no "+"), `answer_url`, `answer_method`,
  `ring_timeout`, and asynchronous machine detection (`machine_detection: "true"`, `machine_detection_url`,
  `machine_detection_method`) (201, with a `request_uuid`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx

from agent.telephony.rest import CarrierError, Outbound, RestClient, json_field, segment

PLIVO_API = "https://api.plivo.com"
TRANSFER_PATH = "/plivo/transfer"
VOICEMAIL_PATH = "/plivo/voicemail"


class PlivoApi:
    """Plivo call control for one account; `public_url` is where Plivo fetches our transfer and voicemail XML."""

    carrier = "plivo"

    def __init__(self, auth_id: str, auth_token: str, *, public_url: str, base_url: str = "") -> None:
        base = (base_url or PLIVO_API).rstrip("/") + f"/v1/Account/{segment(auth_id)}"
        self._rest = RestClient(self.carrier, base, auth=httpx.BasicAuth(auth_id, auth_token))
        self._public_url = public_url.rstrip("/")

    async def hang_up(self, call_id: str) -> None:
        await self._rest.request("DELETE", f"/Call/{segment(call_id)}/", ok=(204, 404))  # 404: already over

    async def _run_xml(self, call_id: str, url: str) -> None:
        if not self._public_url:
            raise CarrierError("plivo: PUBLIC_URL is not set (Plivo fetches the transfer and voicemail XML from it)")
        body = {"legs": "aleg", "aleg_url": url, "aleg_method": "POST"}
        await self._rest.request("POST", f"/Call/{segment(call_id)}/", json=body, ok=(202,))

    async def transfer(self, call_id: str, number: str) -> None:
        await self._run_xml(call_id, f"{self._public_url}{TRANSFER_PATH}?{urlencode({'to': number})}")

    async def leave_voicemail(self, call_id: str, message: str) -> None:
        await self._run_xml(call_id, self._public_url + VOICEMAIL_PATH)  # the XML speaks VOICEMAIL_MESSAGE

    async def dial(self, call: Outbound) -> str:
        body: dict[str, Any] = {
            "from": call.from_number.removeprefix("+"),
            "to": call.to.removeprefix("+"),
            "answer_url": call.answer_url,
            "answer_method": "POST",
            "ring_timeout": round(call.timeout_s),
        }
        if call.machine_url:
            body |= {
                "machine_detection": "true",
                "machine_detection_url": call.machine_url,
                "machine_detection_method": "POST",
            }
        response = await self._rest.request("POST", "/Call/", json=body, ok=(201,))
        return json_field(response, "request_uuid")
