"""Marks on a phone call's outgoing audio, whatever the carrier calls them (Twilio's and Telnyx's `mark`, Plivo's
`checkpoint`): the carrier sends each one back once the audio before it has played (and at once when a `clear`
dropped it), so they tell what the caller has actually heard.

A mark goes out after the first and the last audio chunk of everything the agent says (`utterance-<n>-start`,
`-end`), and one more (`answer-<n>`) right after the first chunk of each answer (an acknowledgement may play before
it). The answer mark's echo times when the caller started hearing the answer: the latency budget as heard on the
phone side. `heard()` waits until everything said has been played to the caller (before a transfer puts the call
through, so the caller hears the agent's last words).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

from agent.latency.observer import AudioKind, TurnLatencyObserver

FIRST_CHUNK_S = 0.04  # pipecat writes 40 ms chunks: a start mark is echoed when that first chunk finished playing


class UtteranceMarks:
    """Sends the marks around each stretch of bot speech through `send`, and reads the carrier's echoes."""

    def __init__(self, send: Callable[[str], Awaitable[None]], latency: TurnLatencyObserver) -> None:
        self._send_message = send
        self._latency = latency
        self._numbers = itertools.count(1)
        self._answers = itertools.count(1)
        self._current: int | None = None
        self._unechoed: set[str] = set()
        self._settled = asyncio.Event()
        self._settled.set()
        self.echoed: list[str] = []

    async def _send(self, name: str) -> None:
        self._unechoed.add(name)
        self._settled.clear()
        await self._send_message(name)

    async def audio_written(self, kind: AudioKind) -> None:
        answer_onset = await self._latency.audio_sent(kind)
        if self._current is None:
            self._current = next(self._numbers)
            await self._send(f"utterance-{self._current}-start")
        if answer_onset:
            await self._send(f"answer-{next(self._answers)}")

    async def utterance_ended(self) -> None:
        if self._current is not None:
            await self._send(f"utterance-{self._current}-end")
            self._current = None

    def cleared(self) -> None:
        """A `clear` went out: the audio before the marks still out is dropped, so they no longer wait to be heard
        (some carriers echo them at once, Plivo never does)."""
        self._unechoed.clear()
        if self._current is None:
            self._settled.set()

    async def echoed_back(self, name: str) -> None:
        self.echoed.append(name)
        self._unechoed.discard(name)
        if self._current is None and not self._unechoed:
            self._settled.set()
        if name.startswith("answer-"):
            await self._latency.playout_started(time.monotonic() - FIRST_CHUNK_S)

    @property
    def speaking(self) -> bool:
        """Whether the agent is talking or the caller has not heard all of it yet."""
        return not self._settled.is_set()

    async def heard(self, *, start_within_s: float = 0.0, timeout_s: float) -> bool:
        """Wait until the agent has stopped speaking and the caller has heard all of it; with `start_within_s`,
        first wait that long for speech that was just queued to start. False when `timeout_s` ran out first."""
        if start_within_s and self._settled.is_set():
            deadline = time.monotonic() + start_within_s
            while self._settled.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        try:
            async with asyncio.timeout(timeout_s):
                await self._settled.wait()
        except TimeoutError:
            return False
        return True
