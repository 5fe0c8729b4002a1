"""Completion streams that can start before they are needed and race each other.

- `BufferedStream` runs one provider stream in a background task and buffers its chunks, so a completion can be
  started speculatively (at the caller's first moment of silence) and read later, or thrown away.
- `AnswerStream` reads a primary stream and, if it has not produced spoken text by the hedging deadline (or
  fails), starts the same request on a fallback provider and keeps whichever speaks first, cancelling the other.

Reading is queue-based, so a reader may wait with a timeout (for the acknowledgement deadline) without
disturbing the streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.llm.client import ChatChunk, ChatCompletionClient, ProviderError, StreamStats

_END = object()


class BufferedStream:
    """One completion streaming in the background into `queue` as (self, chunk | error | _END)."""

    def __init__(self, client: ChatCompletionClient, messages: Sequence[dict[str, Any]]) -> None:
        self.client = client
        self.messages = list(messages)
        self.stats = StreamStats()
        self.queue: asyncio.Queue[tuple[BufferedStream, Any]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"llm-stream-{client.provider.name}")

    @property
    def provider(self) -> str:
        return self.client.provider.name

    async def _run(self) -> None:
        try:
            async for chunk in self.client.stream(self.messages, self.stats):
                await self.queue.put((self, chunk))
            await self.queue.put((self, _END))
        except ProviderError as e:
            await self.queue.put((self, e))

    def redirect(self, queue: asyncio.Queue[tuple[BufferedStream, Any]]) -> None:
        """Move what is buffered so far (and everything after) to another queue."""
        while not self.queue.empty():
            queue.put_nowait(self.queue.get_nowait())
        self.queue = queue

    def cancel(self) -> None:
        self._task.cancel()


class AnswerStream:
    def __init__(
        self,
        primary: BufferedStream,
        *,
        fallback: Callable[[Sequence[dict[str, Any]]], BufferedStream | None] | None = None,
        hedge_after_s: float | None = None,
    ) -> None:
        self._queue: asyncio.Queue[tuple[BufferedStream, Any]] = asyncio.Queue()
        primary.redirect(self._queue)
        self._messages = primary.messages
        self._primary = primary
        self._streams = [primary]
        self._fallback = fallback
        self._hedge_at = time.monotonic() + hedge_after_s if hedge_after_s and fallback else None
        self.winner: BufferedStream | None = None
        self.hedged = False
        self._errors: list[ProviderError] = []

    @property
    def stats(self) -> StreamStats:
        return (self.winner or self._primary).stats

    @property
    def provider(self) -> str:
        return (self.winner or self._primary).provider

    async def next_chunk(self, timeout_s: float | None = None) -> ChatChunk | None:
        """The next chunk of the winning stream, None at its end. Raises TimeoutError (nothing is lost) or the
        ProviderError of the last stream standing."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = self._wait_time(deadline)
            try:
                if self._queue.empty():
                    stream, item = await asyncio.wait_for(self._queue.get(), wait)
                else:  # what is already here is read even when the deadline has passed
                    stream, item = self._queue.get_nowait()
            except TimeoutError:
                if self._hedge_at is not None and time.monotonic() >= self._hedge_at:
                    self._hedge()
                    continue
                raise
            if self.winner is not None and stream is not self.winner:
                continue
            if isinstance(item, ProviderError):
                self._errors.append(item)
                self._streams.remove(stream)
                if self.winner is None and self._fallback and not self.hedged:
                    self._hedge()
                if not self._streams:
                    raise self._errors[-1]
                continue
            if item is _END:
                if self.winner is None:  # finished without a word: let a racing stream speak if there is one
                    self._streams.remove(stream)
                    if self._streams:
                        continue
                return None
            if self.winner is None:
                if not item.content:
                    continue  # reasoning before anyone spoke: not a reason to pick a winner
                self._pick(stream)
            return item

    def _wait_time(self, deadline: float | None) -> float | None:
        now = time.monotonic()
        waits = [t - now for t in (deadline, self._hedge_at if self.winner is None else None) if t is not None]
        return max(0.0, min(waits)) if waits else None

    def _hedge(self) -> None:
        self._hedge_at = None
        if self.hedged or not self._fallback:
            return
        self.hedged = True
        extra = self._fallback(self._messages)
        if extra is not None:
            extra.redirect(self._queue)
            self._streams.append(extra)

    def _pick(self, stream: BufferedStream) -> None:
        self.winner = stream
        self._hedge_at = None
        for other in self._streams:
            if other is not stream:
                other.cancel()
        self._streams = [stream]

    def cancel(self) -> None:
        for stream in self._streams:
            stream.cancel()
