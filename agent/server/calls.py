"""Where an admitted call runs. The front process terminates every caller's websocket, checks and admits it, then
hands it to a `CallRunner`: the worker pool (`workers.py`, the default) or, with `WORKERS=0`, this process itself
(`InProcessCalls`, one event loop and one runtime shared by every call: the single-process server). A worker
process runs its own calls with an `InProcessCalls` too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import WebSocket

from agent.latency.observer import TurnListener
from agent.protocols.input_guard import InputGuard
from agent.runtime import AgentRuntime
from agent.server.metrics import ProviderReading, read_providers
from agent.telephony.gate import StreamOpening
from pipelines.browser import run_browser_call
from pipelines.live import LiveCalls
from pipelines.phone import run_phone_call

ViolationListener = Callable[[str], None]  # told the input bound a caller broke ("flood", "idle")


@dataclass(frozen=True)
class PhoneCall:
    """An admitted phone stream of any carrier: its opening (`opening.messages`: its first messages as sent, handed to
    the worker) and what the agent says first (an outbound call's greeting; "" for an incoming call)."""

    opening: StreamOpening
    greeting: str = ""


class CallRunner(Protocol):
    """Runs admitted calls to their end."""

    def idle(self) -> int:
        """How many more calls could start right now."""
        ...

    def describe(self) -> dict[str, Any]:
        """The LLM provider and model the calls talk to (for /health): never a key."""
        ...

    def providers(self) -> list[ProviderReading]:
        """The LLM providers' rate limits, rests and failures (for /metrics)."""
        ...

    def calls_cpu_seconds(self) -> dict[str, float] | None:
        """CPU seconds used so far by each process that runs calls, by name, or None where calls share a process with
        other work (then admission infers the calls' share from the machine's)."""
        ...

    async def run_browser(self, websocket: WebSocket, on_turn: TurnListener, on_violation: ViolationListener) -> None:
        """The page's call, its input bounded by an `InputGuard` that reports to `on_violation`."""
        ...

    async def run_phone(
        self, websocket: WebSocket, call: PhoneCall, on_turn: TurnListener, on_violation: ViolationListener
    ) -> None:
        """A phone call, of any carrier, whose stream the front already admitted."""
        ...

    async def end_all(self) -> None:
        """Say the drain goodbye on every live call and end it (the drain's last step)."""
        ...


class InProcessCalls:
    """Calls on this process's event loop and runtime (WORKERS=0, and inside each worker process)."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self.runtime = runtime
        self.live = LiveCalls()

    def idle(self) -> int:
        return max(0, self.runtime.settings.max_sessions - self.live.count)

    def describe(self) -> dict[str, Any]:
        return {"provider": self.runtime.provider.name, "model": self.runtime.provider.model, "workers": 0}

    def providers(self) -> list[ProviderReading]:
        return read_providers(self.runtime.chain)

    def calls_cpu_seconds(self) -> dict[str, float] | None:
        return None  # the calls share this process with the front (or this is a worker, which nobody asks)

    async def run_browser(self, websocket: WebSocket, on_turn: TurnListener, on_violation: ViolationListener) -> None:
        await run_browser_call(websocket, self.runtime, on_turn, self._guard("browser", on_violation), self.live)

    async def run_phone(
        self, websocket: WebSocket, call: PhoneCall, on_turn: TurnListener, on_violation: ViolationListener
    ) -> None:
        guard = self._guard("phone", on_violation)
        await run_phone_call(
            websocket, call.opening, self.runtime, on_turn, guard, greeting=call.greeting, live=self.live
        )

    async def end_all(self) -> None:
        await self.live.end_all()

    def _guard(self, channel: str, on_violation: ViolationListener) -> InputGuard:
        return InputGuard(channel, self.runtime.settings.session_idle_timeout_seconds, on_violation=on_violation)
