"""The calls running in this process, so that a drain can end them politely: the agent says goodbye, then the
call ends as if the agent had hung up (an EndFrame: the socket closes, a phone call is hung up)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loguru import logger
from pipecat.frames.frames import EndFrame, TTSSpeakFrame

from pipelines.voice import VoiceCall


class LiveCalls:
    """A registry of running calls; `end_all(goodbye)` ends each one after saying `goodbye`."""

    def __init__(self) -> None:
        self._calls: list[VoiceCall] = []  # a list: VoiceCall is a dataclass, not hashable

    @property
    def count(self) -> int:
        return len(self._calls)

    @contextmanager
    def running(self, call: VoiceCall) -> Iterator[None]:
        self._calls.append(call)
        try:
            yield
        finally:
            self._calls.remove(call)

    async def end_all(self, goodbye: str) -> None:
        for call in list(self._calls):
            logger.info("ending a call with a goodbye")
            await call.worker.queue_frames([TTSSpeakFrame(goodbye), EndFrame()])
