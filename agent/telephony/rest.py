"""Call control through a carrier's REST API, the same shape for every carrier.

Each carrier module provides a `CarrierApi` (hang up, put through to a number, leave a message and hang up, place an
outbound call) over `RestClient`, the one httpx client they share: a base URL, the carrier's auth, a short timeout,
and errors as `CarrierError` whose message names the request and the status but never a credential. A call's
`CallControl` binds one call's id to its carrier's API: it is what the agent's tools and the phone pipeline hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from loguru import logger

REST_TIMEOUT_S = 10.0
MAX_ERROR_CHARS = 200


class CarrierError(Exception):
    """A carrier's REST API refused or failed a request. The message never holds a credential."""


@dataclass(frozen=True)
class Outbound:
    """An outbound call to place: where the carrier fetches the answer document and posts the machine-detection
    result (None: no detection)."""

    to: str
    from_number: str
    answer_url: str
    machine_url: str | None
    timeout_s: float


class CarrierApi(Protocol):
    """One carrier's call control (see the module docstring)."""

    carrier: str

    async def hang_up(self, call_id: str) -> None: ...

    async def transfer(self, call_id: str, number: str) -> None: ...

    async def leave_voicemail(self, call_id: str, message: str) -> None: ...

    async def dial(self, call: Outbound) -> str:
        """Place the call; the carrier's id for the request (may be empty where the carrier returns none)."""
        ...


class RestClient:
    """Requests to one carrier's REST API (see the module docstring)."""

    def __init__(self, carrier: str, base_url: str, *, auth: httpx.Auth | None = None, bearer: str = "") -> None:
        self.carrier = carrier
        self._base_url = base_url.rstrip("/")
        self._auth = auth
        self._headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> httpx.Response:
        """`method` on `path` (below the base URL); CarrierError unless the status is one of `ok`."""
        what = f"{self.carrier} {method} {path}"
        try:
            async with httpx.AsyncClient(timeout=REST_TIMEOUT_S, auth=self._auth, headers=self._headers) as client:
                response = await client.request(method, self._base_url + path, json=json, data=data)
        except httpx.HTTPError as e:
            raise CarrierError(f"{what}: {type(e).__name__}") from None
        if response.status_code not in ok:
            raise CarrierError(f"{what}: HTTP {response.status_code} {response.text[:MAX_ERROR_CHARS]!r}")
        logger.info(f"{what}: HTTP {response.status_code}")
        return response


def json_field(response: httpx.Response, *keys: str) -> str:
    """A string in a JSON answer (following nested `keys`), or "" when the answer holds none there."""
    try:
        value: Any = response.json()
    except ValueError:
        return ""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else ""


def segment(value: str) -> str:
    """`value` as one URL path segment (call ids are format-checked before they get here; this is the second line)."""
    return quote(value, safe="")


@dataclass
class CallControl:
    """One call's control: hang up or put through, once. After either, the other is refused, and `ended` says the
    call left the agent (a stream that stops then is no dropped call)."""

    api: CarrierApi | None
    call_id: str
    transferred_to: str | None = None
    hung_up: bool = False

    @property
    def carrier(self) -> str:
        return self.api.carrier if self.api else "none"

    @property
    def ended(self) -> bool:
        return self.hung_up or self.transferred_to is not None

    async def hang_up(self) -> None:
        """Hang up through the REST API (a call without credentials just has its stream closed)."""
        if self.ended:
            return
        self.hung_up = True
        if self.api is None:
            return
        try:
            await self.api.hang_up(self.call_id)
        except CarrierError as e:
            logger.warning(f"hang-up of call {self.call_id} failed: {e}")

    async def transfer(self, number: str) -> None:
        """Put the call through to `number`; CarrierError when the carrier refuses or cannot be reached."""
        if self.api is None:
            raise CarrierError("this call has no carrier credentials to transfer it with")
        if self.ended:
            raise CarrierError("the call has already left the agent")
        await self.api.transfer(self.call_id, number)
        self.transferred_to = number
