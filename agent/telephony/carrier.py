"""What a carrier declares, once, for the registry (`registry.py`): its call-control API (when its credentials are
set), the number its outbound calls come from, its stream serializer, how a mark is asked for on its stream, its
bridge (gate and answer documents, for the server's routes) and its caller side (for `voice-agent call`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.settings import Settings
from agent.telephony.bridge import Bridge
from agent.telephony.dialect import Dialect
from agent.telephony.gate import StreamOpening
from agent.telephony.rest import CallControl, CarrierApi
from agent.telephony.stream_messages import CheckedStreamMessages
from agent.telephony.tokens import StreamTokens

CARRIER_RATE = 8000  # every carrier streams 8 kHz narrowband audio


@dataclass(frozen=True)
class Carrier:
    """One carrier: everything the server, the caller side and the benchmarks need to know of it."""

    name: str
    api: Callable[[Settings], CarrierApi | None]
    serializer: type[CheckedStreamMessages]  # (opening, *, on_mark, on_stop); `read_opening` reads the opening
    mark_message: Callable[[StreamOpening, str], str]
    bridge: Callable[[Settings, StreamTokens, Callable[[str], None]], Bridge]
    caller: Callable[..., Dialect]  # a fresh caller side for one call, given its credentials
    caller_credentials: Callable[[Settings], dict[str, Any]]  # what `voice-agent call` signs with, from settings
    close_is_stop: bool = False  # the carrier ends a stream by closing its socket (no `stop` message)

    def from_number(self, settings: Settings) -> str:
        """The number its outbound calls come from (`<CARRIER>_FROM_NUMBER`)."""
        return str(getattr(settings, f"{self.name}_from_number"))

    def control(self, settings: Settings, call_id: str) -> CallControl:
        return CallControl(self.api(settings), call_id)
