"""Watches one call's frames and builds each turn's latency timeline and outcome (see `turns.py`).

A turn starts when the turn controller says the caller started speaking (`UserStartedSpeakingFrame`) and is
confirmed when it says the caller stopped (`UserStoppedSpeakingFrame`); pauses inside it (VAD stops followed by more
speech) move its end-of-speech marks along. The observer reads the pipeline clock stamp of every push, not the
moment the (queued) observer runs, so its marks are exact. Transports add the marks only they can see:
`audio_sent(kind)` after every bot audio write to the socket ("answer" for the LLM's words, "filler" for a
pre-synthesised phrase), and `playout_started()` when the client says the answer started playing. A phone call adds
`transferred()` when it was put through to a person, and keypad entries (`KeypadEntryFrame`) are turns too, timed
from the last digit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from loguru import logger
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    LLMContextFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.tts_service import TTSService

from agent.frames import (
    AnswerHeldFrame,
    BackchannelFrame,
    CompletionStatsFrame,
    KeypadEntryFrame,
    SpeechEndFrame,
    TurnTranscriptionFrame,
)
from agent.latency.turns import FALSE_START_S, LatencyBudget, Turn

AudioKind = Literal["answer", "filler"]

# Called as listener(event, report): "answered" when a turn's answer first left the socket, "heard" when the client
# reported its playout, "closed" when the turn is over (answered and finished or cut, failed, or abandoned).
TurnListener = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class TurnLatencyObserver(BaseObserver):
    """Builds a `Turn` per caller turn from the frames of one call and tells listeners as each one progresses."""

    def __init__(self, budget: LatencyBudget | None = None, **kwargs) -> None:
        super().__init__(observe_every_push=False, **kwargs)
        self.budget = budget or LatencyBudget()
        self.turns: list[Turn] = []
        self._turn: Turn | None = None
        self._cut: Turn | None = None  # a turn whose answer the caller spoke over: closed once that is a turn
        self._bot_speaking_since: float | None = None
        self._mono_origin_ns: int | None = None
        self._listeners: list[TurnListener] = []

    def add_listener(self, listener: TurnListener) -> None:
        """Called with each turn's report (a dict, the same one the replay report holds) as it progresses."""
        self._listeners.append(listener)

    @property
    def reports(self) -> list[dict[str, Any]]:
        return [t.report(self.budget) for t in self.turns if t.user_text or t.answered]

    async def finish(self) -> None:
        """The call is over: close the last turn (an unanswered one ends as `no_answer`)."""
        await self._close_cut()
        if self._turn:
            await self._close(self._turn)

    # -- marks from transports -------------------------------------------------------------------
    async def audio_sent(self, kind: AudioKind = "answer", at: float | None = None) -> bool:
        """Bot audio of `kind` went to the socket. True when it was the first audio of the turn's answer."""
        turn = self._turn
        now = at or time.monotonic()
        if self._bot_speaking_since is None:
            self._bot_speaking_since = now
        if turn is None or not turn.confirmed:
            return False
        if kind == "filler":
            turn.mark("filler_out", now)
            return False
        if "llm_first_token" in turn.marks and not turn.answered:
            turn.mark("answer_out", now)
            report = turn.report(self.budget)
            logger.bind(turn=report).info(
                f"turn {turn.index}: answer after {report['answer_ms']} ms "
                f"({'within' if report['verdict']['within_budget'] else 'OVER'} budget) stages={report['stages_ms']}"
                + (f", filler at {report['filler_ms']} ms" if report["filler_ms"] is not None else "")
            )
            await self._notify("answered", turn)
            return True
        return False

    async def transferred(self) -> None:
        """The call was put through to a person: the current turn ends there (it closes with the call)."""
        if self._turn:
            self._turn.transferred = True

    async def playout_started(self, at: float | None = None) -> None:
        """The client started playing the answer of the last answered turn."""
        answered = [t for t in self.turns if t.answered and "playout" not in t.marks]
        if answered:
            turn = answered[-1]  # never before the answer was sent (an echo minus its chunk can round below it)
            turn.mark("playout", max(at or time.monotonic(), turn.marks["answer_out"]))
            await self._notify("heard", turn)

    # -- frames ----------------------------------------------------------------------------------
    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if data.direction != FrameDirection.DOWNSTREAM:
            return
        at = self._monotonic(data)
        turn = self._turn
        open_turn = turn if turn and not turn.confirmed else None
        if isinstance(frame, UserStartedSpeakingFrame):
            await self._new_turn(at)
        elif isinstance(frame, KeypadEntryFrame):
            keyed = await self._new_turn(at)
            keyed.user_text = f"[keypad] {frame.digits}"
            for name in ("speech_end", "vad_stop", "transcript", "turn_end"):
                keyed.mark(name, at)
        elif isinstance(frame, VADUserStartedSpeakingFrame) and open_turn:
            for name in ("speech_end", "vad_stop", "transcript"):  # the caller went on after a pause
                open_turn.marks.pop(name, None)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            current = open_turn or await self._new_turn(at)
            current.mark("vad_stop", at, overwrite=True)
            current.mark("speech_end", at - frame.stop_secs, overwrite=True)
        elif isinstance(frame, SpeechEndFrame) and open_turn and "vad_stop" in open_turn.marks:
            # The end of speech measured on the audio itself: earlier than the VAD's stop minus stop_secs.
            vad_stop = open_turn.marks["vad_stop"]
            open_turn.mark("speech_end", min(open_turn.marks["speech_end"], vad_stop - frame.silence_s), overwrite=True)
        elif isinstance(frame, TranscriptionFrame) and open_turn:
            if isinstance(frame, TurnTranscriptionFrame):
                open_turn.user_text = frame.turn_text
            else:
                open_turn.user_text = f"{open_turn.user_text} {frame.text}".strip()
            if open_turn.user_text:
                open_turn.mark("transcript", at, overwrite=True)
        elif isinstance(frame, UserStoppedSpeakingFrame) and open_turn:
            open_turn.mark("turn_end", at)
        elif isinstance(frame, LLMContextFrame) and isinstance(data.source, LLMUserAggregator) and turn:
            # a request for an answer (speculative ones too), first pushed by the user aggregator towards the LLM
            turn.llm_requests += 1
            if not turn.answered:
                turn.mark("llm_request", at, overwrite=True)
        elif isinstance(frame, BackchannelFrame) and turn:
            self._resumed(turn)
        elif isinstance(frame, LLMTextFrame) and isinstance(data.source, LLMService) and turn and turn.confirmed:
            await self._close_cut()  # the caller's words over the last answer were a turn: it is answered
            turn.mark("llm_first_token", at)
            if not turn.backchannels:  # a resumed answer's words are in its text already
                turn.bot_text += frame.text
        elif isinstance(frame, AnswerHeldFrame) and turn:
            turn.held_ms = round(frame.held_s * 1000, 1)
        elif isinstance(frame, CompletionStatsFrame) and turn:
            turn.llm = frame.summary()
            turn.error = frame.error or turn.error
        elif isinstance(frame, TTSStartedFrame) and turn and "llm_first_token" in turn.marks:
            turn.mark("first_clause", at)
        elif isinstance(frame, TTSAudioRawFrame) and isinstance(data.source, TTSService) and turn:
            if "first_clause" in turn.marks:
                turn.mark("tts_first_audio", at)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking_since = None
            if turn and turn.confirmed and (turn.answered or turn.error):
                await self._close(turn)

    async def _new_turn(self, at: float) -> Turn:
        """The caller started a new turn: the previous one is over, and cut if the agent was speaking."""
        previous = self._turn
        if previous and not previous.confirmed:
            return previous  # the same turn goes on (a VAD stop and start inside it)
        await self._close_cut()
        if previous and self._bot_speaking_since is not None:
            previous.cut = True
            previous.false_start = at - self._bot_speaking_since <= FALSE_START_S
            self._cut = previous  # closed when the caller's words turn out to be a turn, not a back-channel
        elif previous:
            await self._close(previous)
        self._turn = Turn(index=len(self.turns) + 1)
        self.turns.append(self._turn)
        return self._turn

    def _resumed(self, backchannel: Turn) -> None:
        """The turn that cut the answer off was a back-channel: the answer goes on, and its turn was not cut."""
        answered = self._cut
        if answered is None:
            backchannel.backchannels += 1
            return
        answered.cut = answered.false_start = False
        answered.backchannels += 1
        self.turns.remove(backchannel)
        self._turn, self._cut = answered, None

    async def _close_cut(self) -> None:
        if self._cut is not None:
            await self._close(self._cut)
            self._cut = None

    def _monotonic(self, data: FramePushed) -> float:
        if self._mono_origin_ns is None:
            self._mono_origin_ns = time.monotonic_ns() - data.source.get_clock().get_time()
        return (self._mono_origin_ns + data.timestamp) / 1e9

    async def _close(self, turn: Turn) -> None:
        if not turn.closed:
            turn.closed = True
            await self._notify("closed", turn)

    async def _notify(self, event: str, turn: Turn) -> None:
        if not (turn.user_text or turn.answered):
            return  # noise the VAD took for speech: nothing to report
        report = turn.report(self.budget)
        for listener in self._listeners:
            result = listener(event, report)
            if result is not None:
                await result
