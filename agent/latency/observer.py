"""Watches one call's frames and builds each turn's latency timeline (see `turns.py`).

The observer reads the pipeline clock stamp of every push, not the moment the (queued) observer runs, so its
marks are exact. Transports add the marks only they can see: `audio_sent()` after every bot audio write to the
socket (the first one after a turn's LLM request is the turn's first audio out), `playout_started()` when the
client says the sound started.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

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
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.tts_service import TTSService

from agent.frames import SpeechEndFrame
from agent.latency.turns import LatencyBudget, Turn
from agent.llm.service import CompletionStatsFrame

# Called as listener(event, report): "answered" when a turn's first audio left the socket, "heard" when the client
# reported playout, "closed" when the answer finished or was cut off (the report then has all the bot's text).
TurnListener = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class TurnLatencyObserver(BaseObserver):
    def __init__(self, budget: LatencyBudget | None = None, **kwargs) -> None:
        super().__init__(observe_every_push=False, **kwargs)
        self.budget = budget or LatencyBudget()
        self.turns: list[Turn] = []
        self._turn: Turn | None = None
        self._mono_origin_ns: int | None = None
        self._listeners: list[TurnListener] = []

    def add_listener(self, listener: TurnListener) -> None:
        """Called with each turn's report (a dict, the same one the replay report holds) as it progresses."""
        self._listeners.append(listener)

    @property
    def reports(self) -> list[dict[str, Any]]:
        return [t.report(self.budget) for t in self.turns if t.user_text or t.answered]

    # -- marks from transports -------------------------------------------------------------------
    async def audio_sent(self, at: float | None = None) -> None:
        turn = self._turn
        if turn and "llm_request" in turn.marks and "audio_out" not in turn.marks:
            turn.mark("audio_out", at or time.monotonic())
            report = turn.report(self.budget)
            logger.bind(turn=report).info(
                f"turn {turn.index}: {report['voice_to_voice_ms']} ms voice-to-voice "
                f"({'within' if report['verdict']['within_budget'] else 'OVER'} budget) stages={report['stages_ms']}"
            )
            await self._notify("answered", turn)

    async def playout_started(self, at: float | None = None) -> None:
        """The client started playing the last answered turn."""
        answered = [t for t in self.turns if t.answered and "playout" not in t.marks]
        if answered:
            answered[-1].mark("playout", at or time.monotonic())
            await self._notify("heard", answered[-1])

    # -- frames ----------------------------------------------------------------------------------
    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if data.direction != FrameDirection.DOWNSTREAM:
            return
        at = self._monotonic(data)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            if self._turn and "llm_request" not in self._turn.marks:
                for name in ("speech_end", "vad_stop", "transcript"):
                    self._turn.marks.pop(name, None)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            turn = self._current()
            turn.mark("vad_stop", at, overwrite=True)
            turn.mark("speech_end", at - frame.stop_secs, overwrite=True)
        elif isinstance(frame, SpeechEndFrame) and self._turn and "vad_stop" in self._turn.marks:
            # The energy-based end of speech: earlier than the VAD's stop minus stop_secs, and the true one.
            vad_stop = self._turn.marks["vad_stop"]
            self._turn.mark(
                "speech_end", min(self._turn.marks["speech_end"], vad_stop - frame.silence_s), overwrite=True
            )
        elif isinstance(frame, TranscriptionFrame):
            turn = self._current()
            turn.user_text += " " + frame.text
            turn.mark("transcript", at, overwrite=True)
        elif isinstance(frame, UserStartedSpeakingFrame):
            turn = self._turn
            if turn and "llm_request" in turn.marks and "bot_stopped" not in turn.marks:
                turn.interrupted = True  # the caller spoke over (or before) the answer
                await self._close(turn)
            self._current()
        elif isinstance(frame, UserStoppedSpeakingFrame) and self._turn:
            self._turn.mark("turn_end", at, overwrite=True)
        elif isinstance(frame, LLMContextFrame) and isinstance(data.destination, LLMService) and self._turn:
            self._turn.mark("llm_request", at)
        elif isinstance(frame, LLMTextFrame) and isinstance(data.source, LLMService) and self._turn:
            self._turn.mark("llm_first_token", at)
            self._turn.bot_text += frame.text
        elif isinstance(frame, CompletionStatsFrame) and self._turn:
            self._turn.llm = _llm_summary(frame)
        elif isinstance(frame, TTSStartedFrame) and self._turn and "llm_first_token" in self._turn.marks:
            self._turn.mark("first_clause", at)
        elif isinstance(frame, TTSAudioRawFrame) and isinstance(data.source, TTSService) and self._turn:
            if "first_clause" in self._turn.marks:
                self._turn.mark("tts_first_audio", at)
        elif isinstance(frame, BotStoppedSpeakingFrame) and self._turn and self._turn.answered:
            self._turn.mark("bot_stopped", at)
            await self._close(self._turn)

    def _current(self) -> Turn:
        """The turn being heard now; a new one once the previous got its answer under way."""
        if self._turn is None or "llm_request" in self._turn.marks:
            self._turn = Turn(index=len(self.turns) + 1)
            self.turns.append(self._turn)
        return self._turn

    def _monotonic(self, data: FramePushed) -> float:
        if self._mono_origin_ns is None:
            self._mono_origin_ns = time.monotonic_ns() - data.source.get_clock().get_time()
        return (self._mono_origin_ns + data.timestamp) / 1e9

    async def _close(self, turn: Turn) -> None:
        if not turn.closed:
            turn.closed = True
            await self._notify("closed", turn)

    async def _notify(self, event: str, turn: Turn) -> None:
        report = turn.report(self.budget)
        for listener in self._listeners:
            result = listener(event, report)
            if result is not None:
                await result


def _llm_summary(frame: CompletionStatsFrame) -> dict[str, Any]:
    stats = frame.stats
    summary: dict[str, Any] = {
        "provider": frame.provider,
        "model": frame.model,
        "speculative": frame.speculative,
        "hedged": frame.hedged,
        "acknowledged": frame.acknowledged,
    }
    if frame.error:
        summary["error"] = frame.error
    if stats:
        if stats.first_token_s is not None:
            summary["first_token_ms"] = round(stats.first_token_s * 1000, 1)
        if stats.first_content_s is not None:
            summary["first_content_ms"] = round(stats.first_content_s * 1000, 1)
            if stats.first_token_s is not None:  # the part of the wait spent on (unspoken) reasoning tokens
                summary["reasoning_ms"] = round((stats.first_content_s - stats.first_token_s) * 1000, 1)
        summary["reasoning_chars"] = stats.reasoning_chars
        if stats.usage:
            summary["usage"] = stats.usage
        if stats.time_info:
            summary["time_info"] = stats.time_info
    return summary
