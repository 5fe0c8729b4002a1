"""The pipecat LLM stage: answers each `LLMContextFrame` by streaming a chat completion through
`ChatCompletionClient`, pushing spoken text as `LLMTextFrame`s the moment it arrives.

Reasoning text is counted, never spoken. When the provider fails (401/429/503, a cut stream, no first token by
the deadline) the caller hears a short apology instead of silence and the call goes on.
"""

from __future__ import annotations

import re
from contextlib import aclosing
from dataclasses import dataclass

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

from agent.llm.client import ChatCompletionClient, ProviderError, StreamStats

_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
APOLOGY = "Sorry, I'm having trouble answering right now. Could you say that again?"


@dataclass
class CompletionStatsFrame(DataFrame):
    """Sent downstream after each completion: timings, usage and Cerebras time_info, for the latency tracker."""

    provider: str = ""
    model: str = ""
    stats: StreamStats | None = None
    error: str | None = None

    def __str__(self) -> str:
        return f"{self.name}(provider: {self.provider}, error: {self.error})"


class StreamingChatLLMService(LLMService):
    """Streams answers from an OpenAI-compatible provider through a shared, pre-warmed client."""

    def __init__(
        self,
        client: ChatCompletionClient,
        *,
        system_prompt: str,
        max_sentences: int = 3,
        apology: str = APOLOGY,
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
        self._apology = apology
        self._max_sentences = max_sentences

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self._answer(frame.context)
        else:
            await self.push_frame(frame, direction)

    async def _messages(self, context: LLMContext) -> list[dict]:
        params = await self.get_llm_adapter().get_llm_invocation_params(
            context, system_instruction=self._settings.system_instruction, convert_developer_to_user=True
        )
        return list(params["messages"])

    async def _answer(self, context: LLMContext) -> None:
        provider = self._client.provider
        stats = StreamStats()
        spoken = ""
        error: str | None = None
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        await self.start_ttfb_metrics()
        try:
            messages = await self._messages(context)
            async with aclosing(self._client.stream(messages, stats)) as chunks:
                async for chunk in chunks:
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
            await self.stop_processing_metrics()
            await self.push_frame(LLMFullResponseEndFrame())
            await self.push_frame(
                CompletionStatsFrame(provider=provider.name, model=provider.model, stats=stats, error=error)
            )
