"""Bounds on what a connected client may send: the pace of its input and the silence of its line.

Every message costs the duration of its audio, and at least `MIN_MESSAGE_S` (so a storm of tiny or non-audio
messages is paced too), from a budget that refills at 1.5x real time and holds `BURST_S` of audio: the backlog a
carrier delivers at once after network jitter passes, a client sending faster than 1.5x real time over a few
seconds has the excess dropped, unread. One that keeps it up past `HOSTILE_AFTER_S` is taken for hostile: all it
sends is dropped from then on (its call gets no more audio to transcribe, so the other calls do not pay for the
flood) and after `FLOOD_DISCONNECT_S` it is disconnected, as is a client that sends no audio for the idle timeout;
both close with 1008 and are reported to `on_violation`. A carrier's catch-up burst loses at most its excess, in an
instant, so it never looks hostile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.serializers.base_serializer import FrameSerializer

from agent.protocols.websocket_transport import close_if_open

REALTIME_FACTOR = 1.5
BURST_S = 3.0
MIN_MESSAGE_S = 0.01
HOSTILE_AFTER_S = 1.0
FLOOD_DISCONNECT_S = 5.0
EPISODE_GAP_S = 1.0  # a pause in the dropping this long ends a flood episode
CHECK_EVERY_S = 0.25


class InputGuard:
    """One call's input budget and idle timer (see the module docstring)."""

    def __init__(
        self,
        channel: str,
        idle_timeout_s: float,
        *,
        on_violation: Callable[[str], None] = lambda reason: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channel = channel
        self._idle_timeout_s = idle_timeout_s
        self._on_violation = on_violation
        self._clock = clock
        self._budget_s = BURST_S
        self._refilled_at = self._last_audio_at = clock()
        self._flood_since: float | None = None
        self._last_drop_at = float("-inf")
        self.dropped_s = 0.0
        self.violation: str | None = None

    def exhausted(self) -> bool:
        """No budget left, or a hostile client: drop the next message without reading it."""
        self._refill()
        if self._budget_s > 0 and not self._flooding_for(HOSTILE_AFTER_S):
            return False
        self._dropped(MIN_MESSAGE_S)
        return True

    def admit(self, audio_s: float) -> bool:
        """Charge a message carrying `audio_s` of audio; False (dropped) when it does not fit the budget."""
        cost = max(audio_s, MIN_MESSAGE_S)
        self._refill()
        if cost > self._budget_s + MIN_MESSAGE_S:
            self._dropped(cost)
            return False
        self._budget_s -= cost
        if audio_s > 0:
            self._last_audio_at = self._clock()
        return True

    @asynccontextmanager
    async def enforced(self, websocket: WebSocket) -> AsyncIterator[None]:
        """While inside, a flooding or idle client is disconnected (closing the socket ends the call)."""
        task = asyncio.create_task(self._enforce(websocket))
        try:
            yield
        finally:
            task.cancel()

    async def _enforce(self, websocket: WebSocket) -> None:
        while (reason := self.broken_bound()) is None:
            await asyncio.sleep(CHECK_EVERY_S)
        self.violation = reason
        logger.warning(f"{self._channel}: disconnecting the client: {reason} (dropped {self.dropped_s:.1f} s of input)")
        self._on_violation(reason)
        await close_if_open(websocket, 1008, reason)

    def broken_bound(self) -> str | None:
        """The bound the client breaks now ("flood" or "idle"), if any."""
        if self._flooding_for(FLOOD_DISCONNECT_S):
            return "flood"
        if self._clock() - self._last_audio_at > self._idle_timeout_s:
            return "idle"
        return None

    def _flooding_for(self, seconds: float) -> bool:
        """Whether the client is dropping input and has been, with no pause of `EPISODE_GAP_S`, for `seconds`."""
        if self._flood_since is None or self._clock() - self._last_drop_at >= EPISODE_GAP_S:
            return False
        return self._last_drop_at - self._flood_since >= seconds

    def _refill(self) -> None:
        now = self._clock()
        self._budget_s = min(BURST_S, self._budget_s + (now - self._refilled_at) * REALTIME_FACTOR)
        self._refilled_at = now

    def _dropped(self, seconds: float) -> None:
        now = self._clock()
        if now - self._last_drop_at >= EPISODE_GAP_S:
            self._flood_since = now
            logger.warning(
                f"{self._channel}: input faster than {REALTIME_FACTOR}x real time: dropping what does not fit"
            )
        self._last_drop_at = now
        self.dropped_s += seconds


class GuardedSerializer(FrameSerializer):
    """A client's serializer behind its `InputGuard`: what the guard drops is never deserialized."""

    def __init__(self, inner: FrameSerializer, guard: InputGuard) -> None:
        super().__init__()
        self._inner = inner
        self._guard = guard

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await self._inner.setup(setup)

    async def serialize(self, frame: Frame) -> str | bytes | None:
        return await self._inner.serialize(frame)

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if self._guard.exhausted():
            return None
        frame = await self._inner.deserialize(data)
        audio_s = 0.0
        if isinstance(frame, InputAudioRawFrame) and frame.sample_rate > 0:
            audio_s = len(frame.audio) / (2 * frame.num_channels * frame.sample_rate)
        return frame if self._guard.admit(audio_s) else None
