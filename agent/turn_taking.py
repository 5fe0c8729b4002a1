"""Turn taking tuned for latency: when is the caller done, and how much of the answer is ready by then.

- `AdaptiveTurnStopStrategy`: the end-of-turn wait after the VAD calls the speech over is short when the
  transcript sounds finished (a question, a full sentence), long when it trails off ("and…", "um", a comma), and
  in between when Whisper gave no punctuation to go by (short answers like "ten of clubs").
- `SpeculationTrigger`: sits between STT and the user aggregator. The VAD calls speech over at the first moment
  of silence, Whisper transcribes at once, and this starts the LLM on the turn's words right then, while the
  end-of-turn wait runs. If the caller goes on speaking the speculation is dropped (and redone at the next pause);
  if the turn ends with the same words, the answer is already streaming.
"""

from __future__ import annotations

import re
import time

from pipecat.frames.frames import (
    Frame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.utils.string import TextPartForConcatenation, concatenate_aggregated_text

from agent.llm.service import StreamingChatLLMService

# Words a finished sentence rarely ends on: Whisper still ends such fragments with a period ("He was not.").
_TRAILING_WORDS = """
and but or so because if when while although though since unless until than that which who whose where
the a an this these those my your his her our their some any every
to of with in on at for from by about into onto over under through after before like as
is was are were be been being am do does did have has had will would can could should shall may might must
not i you he she we they um uh er hmm
"""
_TRAILING = frozenset(_TRAILING_WORDS.split())
_FINISHED = re.compile(r"[.?!][\"')\]]*$")
_TRAILS_OFF = re.compile(r"([,;:\-–—]|\.\.\.|…)$")


def end_of_turn_wait(text: str, short_s: float, long_s: float) -> float:
    """The silence to wait for after the VAD stop, judged from the words so far."""
    text = text.strip()
    words = re.findall(r"[a-z0-9']+", text.lower())
    if not words or words[-1] in _TRAILING or _TRAILS_OFF.search(text):
        return long_s
    if _FINISHED.search(text) and len(words) > 1:
        return short_s
    return (short_s + long_s) / 2  # no punctuation to go by, or a single word ("Yes." may be the start of more)


class AdaptiveTurnStopStrategy(SpeechTimeoutUserTurnStopStrategy):
    """pipecat's speech-timeout strategy with the timeout chosen from the transcript, within [short, long]."""

    def __init__(self, *, short_wait_s: float, long_wait_s: float, **kwargs) -> None:
        super().__init__(user_speech_timeout=long_wait_s, **kwargs)
        self._short_wait_s = min(short_wait_s, long_wait_s)
        self._vad_stopped_at = 0.0

    async def _handle_vad_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        self._vad_stopped_at = time.monotonic()
        await super()._handle_vad_user_stopped_speaking(frame)

    async def _handle_transcription(self, frame: TranscriptionFrame) -> None:
        await super()._handle_transcription(frame)
        wait = end_of_turn_wait(self._text, self._short_wait_s, self._user_speech_timeout)
        if self._vad_stopped and self._user_speech_timeout_task and wait < self._user_speech_timeout:
            remaining = max(0.0, wait - (time.monotonic() - self._vad_stopped_at))
            await self.task_manager.cancel_task(self._user_speech_timeout_task)
            self._user_speech_timeout_task = self.task_manager.create_task(
                self._user_speech_timeout_handler(remaining), f"{self}::_user_speech_timeout_handler"
            )


class SpeculationTrigger(FrameProcessor):
    def __init__(self, llm: StreamingChatLLMService, **kwargs) -> None:
        super().__init__(**kwargs)
        self._llm = llm
        self._parts: list[TextPartForConcatenation] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame) and frame.text.strip():
            # Joined exactly as the user aggregator will join them, so a turn that ends here matches.
            self._parts.append(TextPartForConcatenation(frame.text, includes_inter_part_spaces=False))
            await self._llm.speculate(concatenate_aggregated_text(self._parts))
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._llm.cancel_speculation()
        elif isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)):
            self._parts = []  # a turn boundary: the next words belong to a new turn
        await self.push_frame(frame, direction)
