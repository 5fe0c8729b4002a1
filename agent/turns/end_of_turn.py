"""When is the caller's turn over, and how much of the answer can be under way by then.

`EndOfTurnStrategy` is the one user-turn stop strategy of the pipeline (pipecat ends a turn when *any* listed stop
strategy fires, so combining signals has to happen inside one). After each VAD stop it gets the transcript of the
words so far and chooses how much more silence to wait for:

- from the words (`word_wait`): short after a finished sentence or a question, long when they trail off ("and",
  "um", a comma, a function word, an auxiliary unless it closes a comparison: "than he was."), medium when there is
  no punctuation to go by;
- from the voice, when the words leave it open: Smart Turn v3 (`smart_turn.py`) moves a medium wait to short when
  the caller sounds finished. It never lengthens one: on the phone fixtures it scored finished sentences as
  unfinished ("I would like to change my delivery address, please.": 0.01; "He was not an ill-disposed young man.":
  0.02) as often as mid-sentence pauses as finished (0.8-0.99), so its "unfinished" only cost answers 400 ms;
- from the caller (`patience.py`, with `learn_pauses`): once they have gone on talking over an answer that started
  in their pause, no wait is shorter than that pause.

The answer does not wait for that decision. With speculation on, the strategy asks pipecat for a speculative
inference on the words so far (`trigger_user_turn_inference_triggered(speculation=...)`): the LLM starts streaming
while the silence is being timed, and `LLMService`'s speculation gate holds its output. When the wait runs out the
turn is finalised and confirms the speculation (the gate releases the answer); if the caller speaks again first, the
speculation is withdrawn and the stream is cancelled. The turn goes into the conversation with the same words the
LLM was asked (`Conversation`). Speculation starts `SPECULATION_LEAD_S` before the planned end of the turn (at once
for short waits), so a long wait after "and..." does not spend a request on every pause.

Silence is counted in audio frames since the VAD stop, and starts again whenever the VAD hears voice: the VAD
confirms the caller's next words only after `VAD_START_MS` of them, and a turn must not end in that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Literal

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

from agent.frames import TurnTranscriptionFrame
from agent.text import ends_sentence, same_words, trails_off, words
from agent.turns.conversation import Conversation
from agent.turns.patience import CallerPauses
from agent.turns.smart_turn import WINDOW_S, SmartTurnModel
from agent.turns.vad import FastStopSileroVAD

Wait = Literal["short", "medium", "long"]

_AUXILIARIES = """
is was are were be been being am do does did have has had will would can could should shall may might must
"""
# Words a finished sentence rarely ends on: Whisper still ends such fragments with a period ("He was not.").
_TRAILING_WORDS = """
and but or so because if when while although though since unless until than that which who whose where
the a an this these those my your his her our their some any every
to of with in on at for from by about into onto over under through after before like as
not i he she we they um uh er hmm
"""  # not "you": "Thank you." and "See you." are finished
AUXILIARIES = frozenset(_AUXILIARIES.split())
TRAILING = frozenset(_TRAILING_WORDS.split()) | AUXILIARIES
SPECULATION_LEAD_S = 0.6  # start the speculative request this long before the planned end of the turn
WALL_CLOCK_GRACE_S = 0.5  # without audio frames, a wait ends this much later by the wall clock
SOUNDS_FINISHED = 0.7  # Smart Turn probability above which a medium wait becomes short


def word_wait(text: str) -> Wait:
    """How long to wait after these words: judged from how they end."""
    said = words(text)
    if not said or (said[-1] in TRAILING and not ends_comparison(said)) or trails_off(text):
        return "long"
    if ends_sentence(text) and len(said) > 1:
        return "short"
    return "medium"  # no punctuation to go by, or a single word ("Yes." may be the start of more)


def ends_comparison(said: list[str]) -> bool:
    """A comparison's clause ends on its auxiliary: "... more respectable than he was", "as fast as it can"."""
    return len(said) >= 3 and said[-1] in AUXILIARIES and said[-3] in ("than", "as")


def voice_wait(probability: float) -> Wait:
    """The wait after words that leave it open, from Smart Turn's P(finished): short when the voice sounds finished,
    else medium (never long: Smart Turn's "unfinished" is wrong too often to cost an answer 400 ms)."""
    return "short" if probability >= SOUNDS_FINISHED else "medium"


class EndOfTurnStrategy(BaseUserTurnStopStrategy):
    """Ends the caller's turn after a silence chosen from their words and voice, speculating on the answer."""

    def __init__(
        self,
        *,
        waits_s: dict[Wait, float],
        budget_s: float,
        learn_pauses: bool = False,
        conversation: Conversation | None = None,
        smart_turn: SmartTurnModel | None = None,
        vad: FastStopSileroVAD | None = None,
        speculate: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._conversation = conversation
        self._vad = vad
        self._voiced_buffers = 0  # the VAD's count when the silence was last checked
        self._waits_s = waits_s
        self._smart_turn = smart_turn
        self._speculate = speculate
        self._text = ""
        self._speaking = False
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
        self._pauses = CallerPauses.within(waits_s, budget_s) if learn_pauses else None
        self._audio_tick = asyncio.Event()

    async def handle_user_turn_started(self) -> None:
        await self._reset()

    async def handle_user_turn_stopped(self) -> None:
        await self._reset()

    async def cleanup(self) -> None:
        await self._cancel_decision()
        await super().cleanup()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, InputAudioRawFrame):
            self._keep_audio(frame)
            if not self._speaking:
                self._count_silence(frame)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = True
            if self._pauses and self._pauses.caller_resumed(time.monotonic(), self._pause_s):
                logger.info(
                    f"{self}: the caller went on after a {self._pause_s:.2f} s pause, over the answer: "
                    f"waiting at least {self._pauses.wait_s:.2f} s for them from now on"
                )
            await self._cancel_decision()
            await self._withdraw_speculation()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speaking = False
            self._stopped_at = time.monotonic()
            self._silence_s = self._pause_s = 0.0
            self._voiced_buffers = self._vad.voiced_buffers if self._vad else 0
            self._segments_ended += 1
        elif isinstance(frame, BotStartedSpeakingFrame) and self._pauses:
            self._pauses.answer_started(time.monotonic())
        elif isinstance(frame, BotStoppedSpeakingFrame) and self._pauses:
            self._pauses.answer_ended()
        elif isinstance(frame, TurnTranscriptionFrame):
            if frame.segment < self._segments_ended:
                return ProcessFrameResult.CONTINUE  # the caller has spoken since: a newer transcript is coming
            self._text = frame.turn_text.strip()
            if self._text and not self._speaking:
                await self._cancel_decision()
                self._decision = self.task_manager.create_task(self._decide(self._text), f"{self}::decide")
        return ProcessFrameResult.CONTINUE

    async def _decide(self, text: str) -> None:
        """Choose the wait, speculate on the answer, and end the turn when the silence has lasted that long."""
        wait = word_wait(text)
        await self._speculate_before(self._wait_s(wait), text)
        if wait == "medium" and self._smart_turn is not None:
            wait = await self._ask_smart_turn()
        logger.debug(f"{self}: {wait} wait ({self._wait_s(wait):.2f} s) after {text!r}")
        await self._silence_of(self._wait_s(wait))
        await self._speculate_before(0.0, text)
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

    def _wait_s(self, wait: Wait) -> float:
        return max(self._waits_s[wait], self._pauses.wait_s if self._pauses else 0.0)

    async def _speculate_before(self, wait_s: float, text: str) -> None:
        """Start the speculative inference once the turn would end (after `wait_s` of silence) within the lead."""
        if not self._speculate or self._speculated is not None:
            return
        await self._silence_of(wait_s - SPECULATION_LEAD_S)
        self._speculated = text
        await self.trigger_user_turn_inference_triggered(speculation=UserTurnSpeculation(text=text))

    async def _silence_of(self, seconds: float) -> None:
        """Until the caller has been silent this long since the VAD stop, counted in audio: on a busy server the
        frames are processed late, and a wall-clock wait would end a turn whose next words are already queued.
        A client that stops sending audio altogether is covered by the wall clock, a little later."""
        while self._silence_s < seconds and time.monotonic() - self._stopped_at < seconds + WALL_CLOCK_GRACE_S:
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

    async def _ask_smart_turn(self) -> Wait:
        assert self._smart_turn is not None
        pcm = b"".join(self._audio)
        return voice_wait(await asyncio.to_thread(self._smart_turn.probability, pcm, self._sample_rate))

    async def _withdraw_speculation(self) -> None:
        if self._speculated is not None:
            self._speculated = None
            await self.trigger_user_turn_speculation_cancelled()

    async def _cancel_decision(self) -> None:
        if self._decision and self._decision is not asyncio.current_task():
            await self.task_manager.cancel_task(self._decision)
        self._decision = None

    async def _reset(self) -> None:
        await self._cancel_decision()
        self._text = ""
        self._speculated = None

    def _keep_audio(self, frame: InputAudioRawFrame) -> None:
        """The last WINDOW_S seconds of the caller's audio, for Smart Turn."""
        self._sample_rate = frame.sample_rate
        self._audio.append(frame.audio)
        self._audio_bytes += len(frame.audio)
        while self._audio_bytes > WINDOW_S * self._sample_rate * 2:
            self._audio_bytes -= len(self._audio.popleft())
