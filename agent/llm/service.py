"""The pipecat LLM stage: answers each `LLMContextFrame` by streaming a chat completion, pushing the spoken text as
`LLMTextFrame`s the moment it arrives.

- The request is raced across the provider chain (`race.py`): hedged to the next provider when the first is slow,
  failed over at once when it errors.
- Speculation is pipecat's own: the turn strategy asks for an inference before the turn is confirmed
  (`LLMContextFrame(speculation=True)`), and `LLMService`'s speculation gate holds everything this service pushes
  until the turn is confirmed (released) or withdrawn (discarded, and the stream is cancelled with the interrupted
  frame processing).
- Reasoning text is counted, never spoken. A reasoning model that spends its whole token budget thinking is asked
  once more with a larger budget.
- No dead air: when every provider fails, or the stream breaks in any way, the caller hears the pre-synthesised
  apology (`SpeakPhraseFrame`) and the call goes on.
"""

from __future__ import annotations

from typing import Any

from loguru import logger
from pipecat.frames.frames import Frame, LLMContextFrame, LLMFullResponseEndFrame, LLMFullResponseStartFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

from agent.frames import CompletionStatsFrame, SpeakPhraseFrame
from agent.llm.client import ProviderError
from agent.llm.failover import ProviderChain
from agent.llm.race import AnswerRace
from agent.text import count_sentences

REASONING_RETRY_FACTOR = 4  # the token budget for the one retry after reasoning used up all of it


class StreamingChatLLMService(LLMService):
    """Streams answers from the provider chain through shared, pre-warmed clients."""

    def __init__(
        self,
        providers: ProviderChain,
        *,
        system_prompt: str,
        max_sentences: int = 3,
        hedge_after_s: float | None = None,
        **kwargs,
    ) -> None:
        provider = providers.clients[0].provider
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
        self._providers = providers
        self._max_sentences = max_sentences
        self._hedge_after_s = hedge_after_s

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self._answer(frame.context, speculative=frame.speculation)
        else:
            await self.push_frame(frame, direction)

    async def _messages(self, context: LLMContext) -> list[dict[str, Any]]:
        params = await self.get_llm_adapter().get_llm_invocation_params(
            context, system_instruction=self._settings.system_instruction, convert_developer_to_user=True
        )
        return list(params["messages"])

    async def _answer(self, context: LLMContext, *, speculative: bool) -> None:
        messages = await self._messages(context)
        stats = CompletionStatsFrame(model=self._providers.clients[0].provider.model, speculative=speculative)
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        await self.start_ttfb_metrics()
        failed = False
        try:
            spoken, finish_reason = await self._speak(messages, stats)
            if not spoken and finish_reason == "length":
                logger.warning("LLM: the answer's whole token budget went on reasoning; asking once more with more")
                stats.retried = True
                limit = self._providers.clients[0].provider.max_completion_tokens * REASONING_RETRY_FACTOR
                spoken, finish_reason = await self._speak(messages, stats, budget=limit)
            if not spoken:
                raise ProviderError(stats.provider or "llm", f"no answer (finish_reason {finish_reason})")
        except Exception as e:  # any failure: the caller hears an apology, never silence
            failed = True
            stats.error = str(e) if isinstance(e, ProviderError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, ProviderError):
                logger.opt(exception=e).error("LLM: answering failed")
            logger.warning(f"LLM: no answer for this turn ({stats.error}); apologising")
        finally:
            await self.stop_processing_metrics()
            await self.push_frame(LLMFullResponseEndFrame())
            if failed:
                await self.push_frame(SpeakPhraseFrame(kind="apology"))
            await self.push_frame(stats)

    async def _speak(
        self, messages: list[dict[str, Any]], stats: CompletionStatsFrame, *, budget: int | None = None
    ) -> tuple[str, str | None]:
        """Race one completion and push its spoken text, up to the sentence limit. Returns (spoken, finish)."""
        overrides = {} if budget is None else {self._providers.clients[0].provider.token_limit_param: budget}
        race = AnswerRace(
            self._providers.available(),
            messages,
            spawn=self.create_task,
            hedge_after_s=self._hedge_after_s,
            on_error=self._providers.failed,
            **overrides,
        )
        spoken = ""
        try:
            async for chunk in race.chunks():
                if not chunk.content or count_sentences(spoken) >= self._max_sentences:
                    continue  # a voice answer stays short; the rest is read (not spoken) to keep the connection
                if not spoken:
                    await self.stop_ttfb_metrics()
                spoken += chunk.content
                await self._push_llm_text(chunk.content)
        finally:
            stats.provider, stats.hedged = race.provider, stats.hedged or race.hedged
            stats.providers_tried += race.tried
            s = race.stats
            stats.first_token_s, stats.first_content_s = s.first_token_s, s.first_content_s
            stats.reasoning_chars += s.reasoning_chars
            stats.usage, stats.time_info = s.usage, s.time_info
        return spoken, race.finish_reason
