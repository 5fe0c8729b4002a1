"""The calls running in this process, so that a drain can end them politely: the agent says its drain goodbye,
then the call ends as if the agent had hung up (an EndFrame: the socket closes, a phone call is hung up)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loguru import logger
from pipecat.frames.frames import EndFrame

from agent.frames import SpeakPhraseFrame
from pipelines.voice import VoiceCall


class LiveCalls:
    """A registry of running calls; `end_all()` ends each one after the goodbye."""

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

    async def end_all(self) -> None:
        for call in list(self._calls):
            logger.info("ending a call with the drain goodbye")
            await call.worker.queue_frames([SpeakPhraseFrame(kind="drain_goodbye"), EndFrame()])
