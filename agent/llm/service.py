"""The pipecat LLM stage: answers each `LLMContextFrame` by streaming a chat completion, pushing the spoken text as
`LLMTextFrame`s the moment it arrives.

- The request is raced across the provider chain (`race.py`): hedged to the next provider when the first is slow,
  failed over at once when it errors.
- Speculation is pipecat's own: the turn strategy asks for an inference before the turn is confirmed
  (`LLMContextFrame(speculation=True)`), and `LLMService`'s speculation gate holds everything this service pushes
  until the turn is confirmed (released) or withdrawn (discarded, and the stream is cancelled with the interrupted
  frame processing).
- Tools: when the answer asks for tools, they run (a speculative answer first waits for its turn to be confirmed,
  so nothing is booked for words the caller had not finished), the caller hears a short hold phrase if they take a
  while, their results go into the conversation and the answer streams on. A barge-in during a tool call does not
  stop the tool: its result still goes into the conversation, unspoken.
- Reasoning text is counted, never spoken. A reasoning model that spends its whole token budget thinking is asked
  once more with a larger budget.
- The provider as judge (`agent/turns/judge.py`, END_OF_TURN_JUDGE=provider): each answer opens with a
  turn-completion marker. The service reads it off, tells the end-of-turn strategy upstream (`TurnVerdictFrame`),
  speaks what follows a "done" marker, and stops reading after a "not done yet" one: a speculative answer then ends
  with nothing said; an answer to a turn that has already ended is asked again with pipecat's re-prompt (the caller
  stayed silent, so they are invited to go on).
- Back-channels (`agent/turns/backchannel.py`): a turn that cut off the answer the caller was hearing and only
  acknowledged it ("yeah", "mm-hm"), or brought no words, is not answered anew: the cut answer goes on from the
  first word the caller did not hear.
- No dead air: when every provider fails, or the stream breaks in any way, the caller hears the pre-synthesised
  apology (`SpeakPhraseFrame`) and the call goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

from agent.frames import BackchannelFrame, CompletionStatsFrame, SpeakPhraseFrame, TurnVerdict, TurnVerdictFrame
from agent.llm.client import ProviderError
from agent.llm.failover import ProviderChain
from agent.llm.race import AnswerRace
from agent.text import count_sentences
from agent.tools.calls import ToolCall
from agent.tools.registry import ToolRegistry, ToolResult
from agent.turns.backchannel import acknowledgement, unheard_rest
from agent.turns.judge import MarkerReader, ProviderJudge

REASONING_RETRY_FACTOR = 4  # the token budget for the one retry after reasoning used up all of it
MAX_TOOL_ROUNDS = 3  # completions that may ask for tools before one has to answer
HOLD_AFTER_S = 0.3  # a tool still running this long gets the hold phrase


@dataclass
class Completion:
    """What one raced completion produced."""

    spoken: str = ""
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    verdict: TurnVerdict | None = None  # the provider's judgment of the caller's turn (with a judge)

    @property
    def judged_unfinished(self) -> bool:
        return self.verdict in ("cut_off", "needs_time") and not self.tool_calls


class StreamingChatLLMService(LLMService):
    """Streams answers from the provider chain through shared, pre-warmed clients, running tools when asked."""

    def __init__(
        self,
        providers: ProviderChain,
        *,
        context: LLMContext,
        system_prompt: str,
        tools: ToolRegistry | None = None,
        max_sentences: int = 3,
        hedge_after_s: float | None = None,
        judge: ProviderJudge | None = None,
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
        self._context = context  # the conversation (a speculative request carries a provisional copy of it)
        self._tools = tools or ToolRegistry()
        self._max_sentences = max_sentences
        self._hedge_after_s = hedge_after_s
        self._judge = judge
        self._turn_confirmed = asyncio.Event()
        self._bot_speaking = False
        self._answer_text = ""  # what the last answer said (pushed, not necessarily heard) ...
        self._answer_finished = False  # ... and whether it was said to its end
        self._answer_cut = False  # the caller spoke over it while it played

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        # Turn frames are system frames: they arrive even while an answer is being processed.
        if isinstance(frame, UserStartedSpeakingFrame):
            self._turn_confirmed.clear()
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._turn_confirmed.set()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking, self._answer_cut = True, False  # a cut answer has resumed, or another one plays
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, InterruptionFrame):
            self._answer_cut = self._answer_cut or (self._bot_speaking and bool(self._answer_text))
        if isinstance(frame, LLMContextFrame):
            if not frame.speculation:
                self._turn_confirmed.set()
            messages = await self._messages(frame.context)
            said = acknowledgement(messages) if self._answer_cut else None
            if said is None or not await self._resume(messages, said):
                await self._answer(messages, speculative=frame.speculation)
        else:
            await self.push_frame(frame, direction)

    async def _messages(self, context: LLMContext) -> list[dict[str, Any]]:
        params = await self.get_llm_adapter().get_llm_invocation_params(
            context, system_instruction=self._settings.system_instruction, convert_developer_to_user=True
        )
        return list(params["messages"])

    async def _resume(self, messages: list[dict[str, Any]], said: str) -> bool:
        """Go on with the cut answer from the first word the caller did not hear (`backchannel.py`). False when
        there is nothing to go on with (it was not said to its end): the turn is then answered as any other."""
        heard = next((m.get("content") for m in reversed(messages[:-1]) if m.get("role") == "assistant"), "")
        rest = unheard_rest(self._answer_text, heard if isinstance(heard, str) else "")
        if not (self._answer_finished and rest):
            return False
        logger.info(f"LLM: {said[:40]!r} over the answer only acknowledged it: the answer goes on ({rest[:40]!r})")
        if self._judge is not None:  # the caller is done: the end-of-turn strategy need not wait for a verdict
            await self.push_frame(TurnVerdictFrame(verdict="complete", text=said), FrameDirection.UPSTREAM)
        await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(BackchannelFrame(text=said))
        await self._push_llm_text(rest)
        await self.push_frame(LLMFullResponseEndFrame())
        return True

    async def _answer(self, messages: list[dict[str, Any]], *, speculative: bool) -> None:
        self._answer_text, self._answer_finished, self._answer_cut = "", False, False
        stats = CompletionStatsFrame(model=self._providers.clients[0].provider.model, speculative=speculative)
        turn_id = _turn_id(messages)
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        await self.start_ttfb_metrics()
        failed = False
        try:
            for _ in range(MAX_TOOL_ROUNDS):
                completion = await self._complete(messages, stats)
                if completion.judged_unfinished and self._turn_confirmed.is_set():
                    completion = await self._reprompt(messages, completion, stats)
                if not completion.tool_calls:
                    break
                messages += await self._run_tools(completion.tool_calls, turn_id, stats)
            # A caller judged not done yet, on a turn still open: the answer ends unspoken, the strategy waits on.
            waiting_on_caller = completion.judged_unfinished and not self._turn_confirmed.is_set()
            if not completion.spoken and not waiting_on_caller:
                raise ProviderError(stats.provider or "llm", f"no answer (finish_reason {completion.finish_reason})")
            self._answer_finished = True
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

    async def _complete(self, messages: list[dict[str, Any]], stats: CompletionStatsFrame) -> Completion:
        """One completion, retried once with a larger budget when reasoning used up all of it."""
        completion = await self._speak(messages, stats)
        if not completion.spoken and not completion.tool_calls and completion.finish_reason == "length":
            logger.warning("LLM: the answer's whole token budget went on reasoning; asking once more with more")
            stats.retried = True
            limit = self._providers.clients[0].provider.max_completion_tokens * REASONING_RETRY_FACTOR
            completion = await self._speak(messages, stats, budget=limit)
        return completion

    async def _reprompt(
        self, messages: list[dict[str, Any]], unfinished: Completion, stats: CompletionStatsFrame
    ) -> Completion:
        """The turn has ended on a caller the model judged unfinished: they stayed silent, so ask it again to
        invite them to go on (a "not done" marker once more is heard as no answer: the apology, not silence)."""
        assert self._judge is not None and unfinished.verdict is not None
        logger.info(f"LLM: the caller stayed silent after a {unfinished.verdict} verdict; inviting them to go on")
        reprompt = {"role": "user", "content": self._judge.reprompt(unfinished.verdict)}
        return await self._complete([*messages, reprompt], stats)

    async def _speak(
        self, messages: list[dict[str, Any]], stats: CompletionStatsFrame, *, budget: int | None = None
    ) -> Completion:
        """Race one completion and push its spoken text, up to the sentence limit (after its turn-completion
        marker, with a judge: a "not done yet" marker ends the reading)."""
        platform = self._providers.clients[0].provider.platform
        overrides = {} if budget is None else {platform.token_limit_param: budget}
        race = AnswerRace(
            self._providers.available(),
            messages,
            spawn=self.create_task,
            tools=self._tools.schemas(),
            hedge_after_s=self._hedge_after_s,
            on_error=self._providers.failed,
            on_win=self._providers.succeeded,
            **overrides,
        )
        completion = Completion()
        marker = self._judge.reader() if self._judge else None
        try:
            await self._read(race, messages, completion, marker, stats)
        except ProviderError as error:
            if count_sentences(completion.spoken) < self._max_sentences:
                raise
            # The answer was said in full; only the unspoken rest was being read. The caller heard an answer.
            logger.warning(f"LLM: the stream broke after the answer was said ({error}); the answer stands")
        finally:
            await race.close()
            stats.provider, stats.hedged = race.provider, stats.hedged or race.hedged
            stats.providers_tried += race.tried
            s = race.stats
            stats.first_token_s, stats.first_content_s = s.first_token_s, s.first_content_s
            stats.reasoning_chars += s.reasoning_chars
            stats.usage, stats.time_info = s.usage, s.time_info
        completion.finish_reason = race.finish_reason
        return completion

    async def _read(
        self,
        race: AnswerRace,
        messages: list[dict[str, Any]],
        completion: Completion,
        marker: MarkerReader | None,
        stats: CompletionStatsFrame,
    ) -> None:
        """Push the spoken text of the race's chunks into `completion`, up to the sentence limit (the rest is read,
        not spoken, to keep the connection); with a judge, after the marker, and no further than a "not done" one."""
        async for chunk in race.chunks():
            completion.tool_calls += chunk.tool_calls
            text = chunk.content
            if text and marker is not None:
                undecided = not marker.decided
                text = marker.feed(text)
                if undecided and marker.verdict is not None:
                    await self._judged(marker.verdict, messages, completion, stats)
                    if marker.verdict != "complete":
                        break
            if not text or count_sentences(completion.spoken) >= self._max_sentences:
                continue  # a voice answer stays short; the rest is read (not spoken) to keep the connection
            if not completion.spoken:
                await self.stop_ttfb_metrics()
            completion.spoken += text
            self._answer_text += text
            await self._push_llm_text(text)
        if marker is not None and not marker.decided and completion.tool_calls:
            await self._judged("complete", messages, completion, stats)  # a tool call: the caller is done

    async def _judged(
        self, verdict: TurnVerdict, messages: list[dict[str, Any]], completion: Completion, stats: CompletionStatsFrame
    ) -> None:
        """Keep the provider's verdict on the caller's turn, and tell the end-of-turn strategy (upstream)."""
        completion.verdict = stats.verdict = verdict
        last = messages[-1] if messages else {}
        text = last.get("content") if last.get("role") == "user" else ""
        await self.push_frame(
            TurnVerdictFrame(verdict=verdict, text=text if isinstance(text, str) else ""), FrameDirection.UPSTREAM
        )

    async def _run_tools(
        self, calls: list[ToolCall], turn_id: str, stats: CompletionStatsFrame
    ) -> list[dict[str, Any]]:
        """Run the answer's tool calls once its turn is confirmed; their messages go into the conversation (even
        if the caller barges in meanwhile) and are returned for the follow-up request."""
        await self._turn_confirmed.wait()
        stats.tools += [call.name for call in calls]
        running = self.create_task(self._record_tools(calls, turn_id), "tools")
        done, _ = await asyncio.wait({running}, timeout=HOLD_AFTER_S)
        if not done and self._tools.wants_hold_phrase(calls):
            await self.push_frame(SpeakPhraseFrame(kind="hold"))
        return await asyncio.shield(running)

    async def _record_tools(self, calls: list[ToolCall], turn_id: str) -> list[dict[str, Any]]:
        results: list[ToolResult] = await asyncio.gather(*(self._tools.run(call, turn_id) for call in calls))
        messages = [
            {"role": "assistant", "content": "", "tool_calls": [call.as_message() for call in calls]},
            *(result.as_message() for result in results),
        ]
        for message in messages:
            self._context.add_message(message)  # type: ignore[arg-type]
        logger.info(f"LLM: tools {[c.name for c in calls]} ran: {[r.content for r in results]}")
        return messages


def _turn_id(messages: list[dict[str, Any]]) -> str:
    """The same for every request that answers the same turn (speculative, confirmed, hedged, retried), so a
    side-effecting tool runs once per turn."""
    user_turn = json.dumps([len(messages), messages[-1] if messages else None], sort_keys=True, default=str)
    return hashlib.sha1(user_turn.encode()).hexdigest()[:16]
