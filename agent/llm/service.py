"""The pipecat LLM stage: answers each `LLMContextFrame` by streaming a chat completion, pushing spoken text as
`LLMTextFrame`s the moment it arrives.

Latency actions, each optional:
- speculation: `speculate(user_text)` starts the completion before the turn is over (see `agent/turn_taking.py`); when
  the turn ends with the same words the answer is already streaming, otherwise it is thrown away;
- hedging: no spoken token from the provider by `hedge_after_s` (or an error) sends the same request to the
  fallback provider, and whichever speaks first is kept;
- acknowledgement: still nothing to say `acknowledge_after_s` after the caller stopped speaking: a short
  pre-synthesised phrase is spoken, so the caller is not left in silence past the budget.

Reasoning text is counted, never spoken. When every provider fails (401/429/503, a cut stream, no first token) the
caller hears a short apology instead of silence and the call goes on.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    DataFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

from agent.frames import SpeechEndFrame
from agent.llm.client import ChatCompletionClient, ProviderError, StreamStats
from agent.llm.streams import AnswerStream, BufferedStream

_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
APOLOGY = "Sorry, I'm having trouble answering right now. Could you say that again?"


@dataclass
class CompletionStatsFrame(DataFrame):
    """Sent downstream after each completion: timings, usage, Cerebras time_info and the actions taken."""

    provider: str = ""
    model: str = ""
    stats: StreamStats | None = None
    error: str | None = None
    speculative: bool = False
    hedged: bool = False
    acknowledged: bool = False

    def __str__(self) -> str:
        return f"{self.name}(provider: {self.provider}, error: {self.error})"


class StreamingChatLLMService(LLMService):
    """Streams answers from an OpenAI-compatible provider through a shared, pre-warmed client."""

    def __init__(
        self,
        client: ChatCompletionClient,
        *,
        context: LLMContext,
        system_prompt: str,
        max_sentences: int = 3,
        apology: str = APOLOGY,
        fallback: ChatCompletionClient | None = None,
        hedge_after_s: float | None = None,
        acknowledgement: str = "",
        acknowledge_after_s: float | None = None,
        **kwargs,
    ) -> None:
        provider = client.provider
        super().__init__(
            settings=LLMSettings(
                model=provider.model,
                system_instruction=system_prompt,
                temperature=provider.temperature,
                max_tokens=provider.max_completion_tokens,
                top_p=None,
                top_k=None,
                frequency_penalty=None,
                presence_penalty=None,
                seed=None,
                filter_incomplete_user_turns=False,
                user_turn_completion_config=None,
                use_provider_thinking_default=False,
            ),
            **kwargs,
        )
        self._client = client
        self._context = context
        self._apology = apology
        self._max_sentences = max_sentences
        self._fallback = fallback
        self._hedge_after_s = hedge_after_s
        self._acknowledgement = acknowledgement
        self._acknowledge_after_s = acknowledge_after_s if acknowledgement else None
        self._speculation: BufferedStream | None = None
        self._speech_ended_at: float | None = None

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self._answer(frame.context)
            return
        if isinstance(frame, SpeechEndFrame):
            self._speech_ended_at = time.monotonic() - frame.silence_s
        await self.push_frame(frame, direction)

    # -- speculation ---------------------------------------------------------------------------------
    async def speculate(self, user_text: str) -> None:
        """Start answering `user_text` now, as if the caller's turn had just ended with it."""
        self.cancel_speculation()
        messages = [*await self._messages(self._context), {"role": "user", "content": user_text}]
        self._speculation = BufferedStream(self._client, messages)

    def cancel_speculation(self) -> None:
        if self._speculation:
            self._speculation.cancel()
            self._speculation = None

    def _take_speculation(self, messages: list[dict[str, Any]]) -> BufferedStream | None:
        speculation, self._speculation = self._speculation, None
        if speculation and _same_request(speculation.messages, messages):
            return speculation
        if speculation:
            logger.debug("LLM: the turn ended differently from the speculation; asking again")
            speculation.cancel()
        return None

    # -- answering -----------------------------------------------------------------------------------
    async def _messages(self, context: LLMContext) -> list[dict[str, Any]]:
        params = await self.get_llm_adapter().get_llm_invocation_params(
            context, system_instruction=self._settings.system_instruction, convert_developer_to_user=True
        )
        return list(params["messages"])

    def _start_fallback(self, messages: list[dict[str, Any]]) -> BufferedStream | None:
        if self._fallback is None:
            return None
        logger.info(f"LLM: hedging to the fallback provider {self._fallback.provider.describe()}")
        return BufferedStream(self._fallback, messages)

    async def _answer(self, context: LLMContext) -> None:
        provider = self._client.provider
        messages = await self._messages(context)
        speculation = self._take_speculation(messages)
        answer = AnswerStream(
            speculation or BufferedStream(self._client, messages),
            fallback=self._start_fallback if self._fallback else None,
            hedge_after_s=self._hedge_after_s,
        )
        speech_ended_at, self._speech_ended_at = self._speech_ended_at or time.monotonic(), None
        acknowledge_at = speech_ended_at + self._acknowledge_after_s if self._acknowledge_after_s else None
        spoken = ""
        acknowledged = False
        error: str | None = None
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        await self.start_ttfb_metrics()
        try:
            while True:
                wait = None if spoken or acknowledge_at is None else max(0.0, acknowledge_at - time.monotonic())
                try:
                    chunk = await answer.next_chunk(wait)
                except TimeoutError:
                    acknowledged, acknowledge_at = True, None
                    logger.info("LLM: no answer yet at the acknowledgement deadline; acknowledging")
                    await self._push_llm_text(self._acknowledgement + " ")
                    continue
                if chunk is None:
                    break
                if not chunk.content or len(_SENTENCE_END.findall(spoken)) >= self._max_sentences:
                    continue  # a voice answer stays short; the rest is read (not spoken) to keep the connection
                if not spoken:
                    await self.stop_ttfb_metrics()
                spoken += chunk.content
                await self._push_llm_text(chunk.content)
        except ProviderError as e:
            error = str(e)
            logger.warning(f"LLM {provider.describe()} failed: {error}")
            await self._push_llm_text((" " if spoken else "") + self._apology)
        finally:
            answer.cancel()
            await self.stop_processing_metrics()
            await self.push_frame(LLMFullResponseEndFrame())
            await self.push_frame(
                CompletionStatsFrame(
                    provider=answer.provider,
                    model=provider.model,
                    stats=answer.stats,
                    error=error,
                    speculative=speculation is not None,
                    hedged=answer.hedged,
                    acknowledged=acknowledged,
                )
            )


def _same_request(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Same conversation and the same last user words (whitespace aside)."""
    if len(a) != len(b) or a[:-1] != b[:-1]:
        return False
    return " ".join(str(a[-1].get("content", "")).split()) == " ".join(str(b[-1].get("content", "")).split())
