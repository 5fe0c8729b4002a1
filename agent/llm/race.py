"""One completion, raced across the provider chain: the first provider to speak answers.

The request goes to the first available provider. If it has not produced a spoken token by the hedging deadline,
the same request also goes to the next provider in the chain (and so on, one more per deadline); if a provider
fails, the next one is asked at once. The first stream to produce spoken text (or a tool call) wins and every other
is closed, so only one provider's answer can ever ask for a tool.

Racing reads each stream's next chunk as a task and waits on those tasks and the hedging timer together
(`asyncio.wait(FIRST_COMPLETED)`); once a winner is known its stream is read directly. Every task is created through
the owning processor's task manager and every stream is closed when the race ends, however it ends (the caller's
barge-in, the call hanging up), so no stream outlives its turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from agent.llm.client import ChatChunk, ChatCompletionClient, ProviderError, StreamStats

Spawn = Callable[[Coroutine[Any, Any, Any], str], asyncio.Task]


@dataclass
class Contender:
    """One provider's stream in the race."""

    client: ChatCompletionClient
    stream: AsyncIterator[ChatChunk]
    stats: StreamStats = field(default_factory=StreamStats)
    next_chunk: asyncio.Task | None = None
    finish_reason: str | None = None

    @property
    def name(self) -> str:
        return self.client.provider.name


class AnswerRace:
    """Streams one chat completion from whichever provider of `providers` speaks first."""

    def __init__(
        self,
        providers: Sequence[ChatCompletionClient],
        messages: Sequence[dict[str, Any]],
        *,
        spawn: Spawn,
        tools: Sequence[dict[str, Any]] = (),
        hedge_after_s: float | None = None,
        on_error: Callable[[ChatCompletionClient, ProviderError], None] | None = None,
        on_win: Callable[[ChatCompletionClient], None] | None = None,
        **overrides: Any,
    ) -> None:
        if not providers:
            raise ProviderError("llm", "no provider is available")
        self._waiting = list(providers)  # not asked yet, in chain order
        self._messages = list(messages)
        self._spawn = spawn
        self._tools = list(tools)
        self._hedge_after_s = hedge_after_s
        self._on_error = on_error
        self._on_win = on_win
        self._overrides = overrides
        self._running: list[Contender] = []
        self._errors: list[ProviderError] = []
        self.tried: list[str] = []
        self.winner: Contender | None = None
        self.hedged = False

    @property
    def stats(self) -> StreamStats:
        return self.winner.stats if self.winner else StreamStats()

    @property
    def provider(self) -> str:
        return self.winner.name if self.winner else (self.tried[0] if self.tried else "")

    @property
    def finish_reason(self) -> str | None:
        return self.winner.finish_reason if self.winner else None

    async def chunks(self) -> AsyncIterator[ChatChunk]:
        """The winning stream's chunks from its first spoken one. Raises the last ProviderError when every
        provider failed."""
        try:
            first = await self._race()
            if first is None:
                return
            yield first
            assert self.winner is not None
            async for chunk in self.winner.stream:
                self.winner.finish_reason = chunk.finish_reason or self.winner.finish_reason
                yield chunk
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop every stream still open (a pending read is cancelled, which closes its HTTP response)."""
        for contender in self._running:
            if contender.next_chunk and not contender.next_chunk.done():
                contender.next_chunk.cancel()
                await asyncio.gather(contender.next_chunk, return_exceptions=True)
            await contender.stream.aclose()  # type: ignore[attr-defined]
        self._running.clear()

    async def _race(self) -> ChatChunk | None:
        self._ask_next()
        timer = self._hedge_timer()
        try:
            while self._running:
                reads = {c.next_chunk: c for c in self._running if c.next_chunk}
                done, _ = await asyncio.wait([*reads, *([timer] if timer else [])], return_when=asyncio.FIRST_COMPLETED)
                if timer in done:
                    timer = None
                    if self._waiting:
                        logger.info(
                            f"LLM: no spoken token by the hedging deadline; asking {self._waiting[0].provider.name}"
                        )
                        self.hedged = True
                        self._ask_next()
                        timer = self._hedge_timer()
                for read in done:
                    if read is timer or read not in reads:
                        continue
                    first = self._take(reads[read], read)
                    if first is not None:
                        return first
            if self._errors and self.winner is None:
                raise self._errors[-1]
            return None
        finally:
            if timer:
                timer.cancel()

    def _take(self, contender: Contender, read: asyncio.Task) -> ChatChunk | None:
        """Handle one finished read; returns the first spoken chunk when this contender wins."""
        chunk = read.result()
        if chunk is None:  # finished without a spoken word (e.g. all of its tokens went on reasoning)
            self._running.remove(contender)
            if not self._running:
                self.winner = contender  # the last one standing: its (empty) answer is the answer
            return None
        if isinstance(chunk, BaseException):
            error = chunk if isinstance(chunk, ProviderError) else ProviderError(contender.name, repr(chunk)[:200])
            if not isinstance(chunk, ProviderError):
                logger.opt(exception=chunk).error(f"LLM: the {contender.name} stream failed unexpectedly")
            logger.warning(f"LLM: {error}")
            self._errors.append(error)
            self._running.remove(contender)
            if self._on_error:
                self._on_error(contender.client, error)
            self._ask_next()  # fail over at once
            return None
        contender.finish_reason = chunk.finish_reason or contender.finish_reason
        if chunk.content or chunk.tool_calls:
            self.winner = contender
            if self._on_win:
                self._on_win(contender.client)
            self._running.remove(contender)
            for other in self._running:
                if other.next_chunk:
                    other.next_chunk.cancel()
            self._spawn(self._close_losers(list(self._running)), "llm-close-losers")
            self._running = [contender]
            return chunk
        contender.next_chunk = self._read(contender)  # reasoning or bookkeeping: keep reading
        return None

    async def _close_losers(self, losers: list[Contender]) -> None:
        for loser in losers:
            if loser.next_chunk:
                await asyncio.gather(loser.next_chunk, return_exceptions=True)
            await loser.stream.aclose()  # type: ignore[attr-defined]

    def _ask_next(self) -> None:
        if not self._waiting:
            return
        client = self._waiting.pop(0)
        self.tried.append(client.provider.name)
        stats = StreamStats()
        stream = client.stream(self._messages, stats, tools=self._tools, **self._overrides)
        contender = Contender(client, stream, stats)
        contender.next_chunk = self._read(contender)
        self._running.append(contender)

    def _read(self, contender: Contender) -> asyncio.Task:
        return self._spawn(_next_chunk(contender.stream), f"llm-read-{contender.name}")

    def _hedge_timer(self) -> asyncio.Task | None:
        if self._hedge_after_s is None or not self._waiting:
            return None
        return self._spawn(asyncio.sleep(self._hedge_after_s), "llm-hedge-timer")


async def _next_chunk(stream: AsyncIterator[ChatChunk]) -> ChatChunk | Exception | None:
    """The stream's next chunk, None at its end, or what it failed with (a task returns it, never raises it)."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None
    except Exception as e:
        return e
