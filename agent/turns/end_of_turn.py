"""When is the caller's turn over, and how much of the answer can be under way by then.

`EndOfTurnStrategy` is the one user-turn stop strategy of the pipeline (pipecat ends a turn when *any* listed stop
strategy fires, so combining signals has to happen inside one). At each VAD stop it gathers the evidence and
chooses how much more silence to wait for (`decision.py`):

- the voice: Smart Turn v3 (`smart_turn.py`) on the last 8 s of the caller's audio, started at the VAD stop, while
  the STT is still transcribing (unless the calibrated rule gives it no weight);
- the words: the words model (`words.py`) on the transcript of the turn so far, with the agent's last words as
  context, once the transcript has come and the silence has lasted `SCORE_AFTER_S` (most VAD stops are gaps
  between words that the caller ends sooner: they cost no score). The agent's words are evaluated ahead, when the
  caller starts speaking, so a score pays only for the caller's words;
- the shape of the turn: a reply of a few words ("five five", "yes", a name) is usually an answer to the agent;
- the caller (`patience.py`, with `learn_pauses`): once they have gone on talking over an answer that started
  in their pause, no wait is shorter than that pause.

The answer does not wait for that decision. With speculation on, the strategy asks pipecat for a speculative
inference on the words so far (`trigger_user_turn_inference_triggered(speculation=...)`): the LLM starts streaming
while the silence is being timed, and `LLMService`'s speculation gate holds its output. When the wait runs out the
turn is finalised and confirms the speculation (the gate releases the answer); if the caller speaks again first, the
speculation is withdrawn and the stream is cancelled. The turn goes into the conversation with the same words the
LLM was asked (`Conversation`). The speculative request goes out with the transcript, while the words are weighed;
when they call for a wait longer than `SPECULATION_LEAD_S` it is withdrawn and asked again that long before the
planned end, so a long wait after "and..." does not hold a request open through every pause.

With the provider as the judge (`judge.py`, END_OF_TURN_JUDGE=provider) the speculative request goes out at once
and its first token decides instead of the local models: "done" ends the turn once the shortest wait is over; "cut
off" or "needs time" withdraws the answer and waits that verdict's wait (a caller silent that long is then invited
to go on); no verdict within the longest wait ends the turn as it is.

A turn that began over the agent's answer and brought no words (a cough, a noise the VAD took for speech) ends
after the shortest wait, not at pipecat's stop timeout: the LLM service then resumes the cut answer
(`backchannel.py`), as it does after a back-channel ("yeah", "mm-hm").

Silence is counted in audio frames since the VAD stop, and starts again whenever the VAD hears voice: the VAD
confirms the caller's next words only after `VAD_START_MS` of them, and a turn must not end in that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult, UserTurnSpeculation
from pipecat.turns.user_stop import BaseUserTurnStopStrategy

from agent.frames import TurnTranscriptionFrame, TurnVerdict, TurnVerdictFrame
from agent.text import same_words
from agent.turns.conversation import Conversation
from agent.turns.decision import RULE, TurnEvidence, TurnRule
from agent.turns.judge import ProviderJudge
from agent.turns.patience import CallerPauses
from agent.turns.smart_turn import WINDOW_S, SmartTurnModel
from agent.turns.vad import FastStopSileroVAD
from agent.turns.words import TurnWordsModel, normalize

SCORE_AFTER_S = 0.1  # silence after the VAD stop before the words are scored (well within the shortest wait)
WORDS_DEADLINE_S = 0.4  # a words score later than this (an overloaded machine) is not waited for
SPECULATION_LEAD_S = 0.6  # start the speculative request this long before the planned end of the turn
WALL_CLOCK_GRACE_S = 0.5  # without audio frames, a wait ends this much later by the wall clock


class EndOfTurnStrategy(BaseUserTurnStopStrategy):
    """Ends the caller's turn after a silence chosen from their words and voice, speculating on the answer."""

    def __init__(
        self,
        *,
        shortest_s: float,
        longest_s: float,
        budget_s: float,
        learn_pauses: bool = False,
        conversation: Conversation | None = None,
        smart_turn: SmartTurnModel | None = None,
        words: TurnWordsModel | None = None,
        rule: TurnRule = RULE,
        vad: FastStopSileroVAD | None = None,
        speculate: bool = True,
        judge: ProviderJudge | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._conversation = conversation
        self._vad = vad
        self._voiced_buffers = 0  # the VAD's count when the silence was last checked
        self._shortest_s = shortest_s
        self._longest_s = longest_s
        self._smart_turn = smart_turn
        self._words = words
        self._rule = rule
        self._voice: asyncio.Task[float | None] | None = None  # Smart Turn on the audio at the last VAD stop
        self._priming: asyncio.Task | None = None  # the words model evaluating the agent's words
        self._speculate = speculate
        self._text = ""
        self._speaking = False
        self._bot_speaking = False
        self._answer_cut = False  # this turn began over the agent's answer (and so cut it off)
        self._stopped_at = 0.0
        self._audio: deque[bytes] = deque()
        self._audio_bytes = 0
        self._sample_rate = 16000
        self._decision: asyncio.Task | None = None
        self._speculated: str | None = None
        # The STT sends one transcript per VAD stop, naming it: decide only on the transcript of the last one.
        self._segments_ended = 0
        self._silence_s = 0.0  # audio heard since the last VAD stop (the caller silent all along)
        self._pause_s = 0.0  # the longest silence since the last VAD stop: the caller's pause, when they go on
        self._pauses = CallerPauses.within(shortest_s, longest_s, budget_s) if learn_pauses else None
        self._audio_tick = asyncio.Event()
        self._judge = judge
        self._verdict: TurnVerdict | None = None  # the provider's judgment of the words speculated on
        self._verdict_came = asyncio.Event()

    async def handle_user_turn_started(self) -> None:
        await self._reset()

    async def handle_user_turn_stopped(self) -> None:
        self._answer_cut = False
        await self._reset()

    async def cleanup(self) -> None:
        await self._cancel_decision()
        await self._cancel_voice()
        if self._priming:
            await self.task_manager.cancel_task(self._priming)
        await super().cleanup()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, InputAudioRawFrame):
            self._keep_audio(frame)
            if not self._speaking:
                self._count_silence(frame)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = True
            self._answer_cut = self._answer_cut or self._bot_speaking
            if self._pauses and self._pauses.caller_resumed(time.monotonic(), self._pause_s):
                logger.info(
                    f"{self}: the caller went on after a {self._pause_s:.2f} s pause, over the answer: "
                    f"waiting at least {self._pauses.wait_s:.2f} s for them from now on"
                )
            await self._cancel_decision()
            await self._withdraw_speculation()
            self._prime_words()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False
            self._stopped_at = time.monotonic()
            self._silence_s = self._pause_s = 0.0
            self._voiced_buffers = self._vad.voiced_buffers if self._vad else 0
            self._segments_ended += 1
            await self._cancel_voice()
            if self._smart_turn is not None and self._rule.uses_voice:
                self._voice = self.task_manager.create_task(self._run_smart_turn(), f"{self}::voice")
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            if self._pauses:
                self._pauses.answer_started(time.monotonic())
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            if self._pauses:
                self._pauses.answer_ended()
        elif isinstance(frame, TurnVerdictFrame):
            if self._speculated is not None and same_words(frame.text, self._speculated):
                self._verdict = frame.verdict
                self._verdict_came.set()
        elif isinstance(frame, TurnTranscriptionFrame):
            if frame.segment < self._segments_ended:
                return ProcessFrameResult.CONTINUE  # the caller has spoken since: a newer transcript is coming
            self._text = frame.turn_text.strip()
            if (self._text or self._answer_cut) and not self._speaking:
                await self._cancel_decision()
                self._decision = self.task_manager.create_task(self._decide(self._text), f"{self}::decide")
        return ProcessFrameResult.CONTINUE

    async def _decide(self, text: str) -> None:
        """Weigh the evidence, speculate on the answer, and end the turn when the silence has lasted that long."""
        if not text:  # no words over the cut answer: the turn is over once the caller is quiet
            await self._silence_of(self._shortest_s)
            self._decision = None
            await self.trigger_user_turn_stopped()
            return
        if self._judge is not None:
            await self._decide_by_provider(text, self._judge)
            return
        await self._speculate_before(0.0, text)  # the request goes out while the words are weighed
        await self._silence_of(SCORE_AFTER_S)
        evidence = TurnEvidence(
            words=await self._read_words(text),
            voice=await self._voice_probability(),
            word_count=len(normalize(text).split()),
        )
        wait_s = self._wait_s(evidence)
        logger.debug(
            f"{self}: wait {wait_s:.2f} s after {text!r} "
            f"(words {_p(evidence.words)}, voice {_p(evidence.voice)}: done {self._rule.done(evidence):.3f})"
        )
        if wait_s > SPECULATION_LEAD_S:
            await self._withdraw_speculation()  # the caller is likely to go on: ask again nearer the end
        await self._speculate_before(wait_s, text)
        await self._silence_of(wait_s)
        await self._speculate_before(0.0, text)
        await self._end_turn(text)

    async def _decide_by_provider(self, text: str, judge: ProviderJudge) -> None:
        """The speculative answer's first token decides: see the module's docstring."""
        if self._speculated is not None and not same_words(self._speculated, text):
            await self._withdraw_speculation()
        self._verdict = None
        self._verdict_came.clear()
        await self._speculate_before(0.0, text)
        await self._silence_of(self._longest_s, until=self._verdict_came)
        verdict = self._verdict
        logger.debug(f"{self}: the provider judged {text!r} {verdict or 'nothing in time'}")
        if verdict is None or verdict == "complete":
            await self._silence_of(self._shortest_s)
        else:
            await self._withdraw_speculation()
            await self._silence_of(judge.wait_s(verdict))
        await self._end_turn(text)

    async def _end_turn(self, text: str) -> None:
        """The caller is done: end the turn on `text`, confirming the speculation on the same words."""
        confirms = self._speculated is not None and same_words(self._speculated, text)
        if not confirms:
            await self._withdraw_speculation()
        self._speculated = None
        self._decision = None
        if self._conversation is not None:
            self._conversation.expect_user_turn(text)
        if confirms:
            await self.trigger_user_turn_finalized(confirms_speculation=True)
        else:
            await self.trigger_user_turn_stopped()

    async def _read_words(self, text: str) -> float | None:
        """The words model's P(done), or None without one (or when it fails or is late: the voice and the wait still
        decide; a score takes ~15-80 ms, and one that takes seconds on a starved machine must not hold the turn)."""
        if self._words is None:
            return None
        agent_said = self._conversation.last_agent_words() if self._conversation is not None else ""
        try:
            async with asyncio.timeout(WORDS_DEADLINE_S):
                return await asyncio.to_thread(self._words.probability, text, agent_said)
        except TimeoutError:
            logger.warning(f"{self}: the words model took over {WORDS_DEADLINE_S:.1f} s: deciding without it")
            return None
        except Exception as error:
            logger.exception(f"{self}: the words model failed ({error}): deciding without it")
            return None

    def _prime_words(self) -> None:
        """Evaluate the agent's last words in the words model while the caller speaks (once per context)."""
        if self._words is None or (self._priming is not None and not self._priming.done()):
            return
        agent_said = self._conversation.last_agent_words() if self._conversation is not None else ""
        self._priming = self.task_manager.create_task(
            asyncio.to_thread(self._words.prime, agent_said), f"{self}::prime"
        )

    async def _voice_probability(self) -> float | None:
        """Smart Turn's P(done) for the audio at the last VAD stop, or None when it was not (or could not be) asked."""
        task = self._voice
        if task is None:
            return None
        await asyncio.wait([task])
        if task.cancelled() or task.exception() is not None:
            logger.warning(
                f"{self}: Smart Turn gave no answer ({task.exception() if not task.cancelled() else 'cancelled'})"
            )
            return None
        return task.result()

    async def _run_smart_turn(self) -> float | None:
        assert self._smart_turn is not None
        pcm = b"".join(self._audio)
        return await asyncio.to_thread(self._smart_turn.probability, pcm, self._sample_rate)

    def _wait_s(self, evidence: TurnEvidence) -> float:
        wait_s = self._rule.wait_s(evidence, self._shortest_s, self._longest_s)
        return max(wait_s, self._pauses.wait_s if self._pauses else 0.0)

    async def _speculate_before(self, wait_s: float, text: str) -> None:
        """Start the speculative inference once the turn would end (after `wait_s` of silence) within the lead."""
        if not self._speculate or self._speculated is not None:
            return
        await self._silence_of(wait_s - SPECULATION_LEAD_S)
        self._speculated = text
        await self.trigger_user_turn_inference_triggered(speculation=UserTurnSpeculation(text=text))

    async def _silence_of(self, seconds: float, *, until: asyncio.Event | None = None) -> None:
        """Until the caller has been silent this long since the VAD stop (or `until` is set), counted in audio: on a
        busy server the frames are processed late, and a wall-clock wait would end a turn whose next words are
        already queued. A client that stops sending audio altogether is covered by the wall clock, a little later."""
        while (
            self._silence_s < seconds
            and time.monotonic() - self._stopped_at < seconds + WALL_CLOCK_GRACE_S
            and not (until and until.is_set())
        ):
            self._audio_tick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._audio_tick.wait(), 0.05)

    def _count_silence(self, frame: InputAudioRawFrame) -> None:
        """One more frame of silence, unless the VAD has heard voice since the last: then the silence starts again."""
        voiced = self._vad.voiced_buffers if self._vad else 0
        if voiced != self._voiced_buffers:
            self._voiced_buffers = voiced
            self._pause_s = max(self._pause_s, self._silence_s)
            self._silence_s = 0.0
        else:
            self._silence_s += len(frame.audio) / 2 / frame.sample_rate
        self._audio_tick.set()

    async def _withdraw_speculation(self) -> None:
        if self._speculated is not None:
            self._speculated = None
            await self.trigger_user_turn_speculation_cancelled()

    async def _cancel_decision(self) -> None:
        if self._decision and self._decision is not asyncio.current_task():
            await self.task_manager.cancel_task(self._decision)
        self._decision = None

    async def _cancel_voice(self) -> None:
        if self._voice:
            await self.task_manager.cancel_task(self._voice)
        self._voice = None

    async def _reset(self) -> None:
        await self._cancel_decision()
        await self._cancel_voice()
        self._text = ""
        self._speculated = None

    def _keep_audio(self, frame: InputAudioRawFrame) -> None:
        """The last WINDOW_S seconds of the caller's audio, for Smart Turn."""
        self._sample_rate = frame.sample_rate
        self._audio.append(frame.audio)
        self._audio_bytes += len(frame.audio)
        while self._audio_bytes > WINDOW_S * self._sample_rate * 2:
            self._audio_bytes -= len(self._audio.popleft())


def _p(probability: float | None) -> str:
    return "-" if probability is None else f"{probability:.3f}"
