"""Where an admitted call runs. The front process terminates every caller's websocket, checks and admits it, then
hands it to a `CallRunner`: the worker pool (`workers.py`, the default) or, with `WORKERS=0`, this process itself
(`InProcessCalls`, one event loop and one runtime shared by every call: the single-process server)."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import WebSocket

from agent.latency.observer import TurnListener
from agent.protocols.twilio import StreamStart
from agent.runtime import AgentRuntime
from pipelines.browser import run_browser_call
from pipelines.live import LiveCalls
from pipelines.phone import run_phone_call


class CallRunner(Protocol):
    """Runs admitted calls to their end."""

    def idle(self) -> int:
        """How many more calls could start right now."""
        ...

    def describe(self) -> dict[str, Any]:
        """The LLM provider and model the calls talk to (for /health): never a key."""
        ...

    async def run_browser(self, websocket: WebSocket, on_turn: TurnListener) -> None: ...

    async def run_phone(
        self, websocket: WebSocket, start: StreamStart, opening: list[str], on_turn: TurnListener
    ) -> None:
        """`opening`: the stream's first messages (`connected`, `start`) as the front already read them."""
        ...

    async def end_all(self, goodbye: str) -> None:
        """Say `goodbye` on every live call and end it (the drain's last step)."""
        ...


class InProcessCalls:
    """Calls on this process's event loop and runtime (WORKERS=0)."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self.runtime = runtime
        self.live = LiveCalls()

    def idle(self) -> int:
        return max(0, self.runtime.settings.max_sessions - self.live.count)

    def describe(self) -> dict[str, Any]:
        return {"provider": self.runtime.provider.name, "model": self.runtime.provider.model, "workers": 0}

    async def run_browser(self, websocket: WebSocket, on_turn: TurnListener) -> None:
        await run_browser_call(websocket, self.runtime, on_turn, self.live)

    async def run_phone(
        self, websocket: WebSocket, start: StreamStart, opening: list[str], on_turn: TurnListener
    ) -> None:
        await run_phone_call(websocket, start, self.runtime, on_turn, self.live)

    async def end_all(self, goodbye: str) -> None:
        await self.live.end_all(goodbye)


class RecordedReceive:
    """Reads a websocket through `receive()` and keeps the text of each message read, so the opening of a Twilio
    stream that the front parsed can be replayed, exactly as sent, to the worker that takes the call."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self.texts: list[str] = []

    async def receive(self) -> dict[str, Any]:
        message = await self._websocket.receive()
        if message.get("text") is not None:
            self.texts.append(message["text"])
        return message
