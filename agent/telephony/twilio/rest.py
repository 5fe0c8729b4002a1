"""Twilio's REST API (2010-04-01), as documented: HTTP Basic auth with the account SID and auth token, form-encoded
parameters, JSON answers.

- hang up: `POST /Accounts/{AccountSid}/Calls/{CallSid}.json` with `Status=completed`;
- transfer: the same resource with `Twiml=<Response><Dial>number</Dial></Response>` (the stream ends, the caller is
  put through);
- voicemail: the same with `<Say>` the message and `<Hangup/>`;
- outbound: `POST /Accounts/{AccountSid}/Calls.json` with `To`, `From`, `Url` (our answer webhook), `Timeout`, and
  asynchronous answering-machine detection (`MachineDetection=DetectMessageEnd`, `AsyncAmd=true`,
  `AsyncAmdStatusCallback`): the call is connected to the agent at once and the result comes later.
"""

from __future__ import annotations

import httpx

from agent.telephony.markup import dial, say_and_hang_up
from agent.telephony.rest import Outbound, RestClient, json_field, segment

TWILIO_API = "https://api.twilio.com"


class TwilioApi:
    """Twilio call control for one account."""

    carrier = "twilio"

    def __init__(self, account_sid: str, auth_token: str, base_url: str = "") -> None:
        base = (base_url or TWILIO_API) + f"/2010-04-01/Accounts/{segment(account_sid)}"
        self._rest = RestClient(self.carrier, base, auth=httpx.BasicAuth(account_sid, auth_token))

    async def _update(self, call_id: str, **form: str) -> None:
        await self._rest.request("POST", f"/Calls/{segment(call_id)}.json", data=form)

    async def hang_up(self, call_id: str) -> None:
        await self._update(call_id, Status="completed")

    async def transfer(self, call_id: str, number: str) -> None:
        await self._update(call_id, Twiml=dial(number))

    async def leave_voicemail(self, call_id: str, message: str) -> None:
        await self._update(call_id, Twiml=say_and_hang_up(message))

    async def dial(self, call: Outbound) -> str:
        form = {"To": call.to, "From": call.from_number, "Url": call.answer_url, "Method": "POST"}
        form["Timeout"] = str(round(call.timeout_s))
        if call.machine_url:
            form |= {
                "MachineDetection": "DetectMessageEnd",
                "AsyncAmd": "true",
                "AsyncAmdStatusCallback": call.machine_url,
                "AsyncAmdStatusCallbackMethod": "POST",
            }
        response = await self._rest.request("POST", "/Calls.json", data=form, ok=(200, 201))
        return json_field(response, "sid")
