"""The pipecat STT stage: Whisper that has the transcript ready when the caller stops talking.

Whisper is not a streaming model, so the streaming is done around it, on the audio of the caller's whole turn
(from the VAD's first start until the turn is confirmed over, pauses included):

- **whole-turn transcripts**: the VAD lets go at the first short silence, so one sentence can be several VAD
  segments. Each time the VAD stops, the turn so far is transcribed with all its audio (not the last fragment alone,
  which Whisper gets wrong) and sent as a `TurnTranscriptionFrame`: the new words for the user aggregator, the whole
  text for the end-of-turn strategy;
- **early start**: the moment the caller's audio goes quiet (`DIP_S` of low energy, before the VAD has decided
  anything) the turn so far is transcribed in the background. If the VAD then calls the speech over with no new
  words since, that transcript is the final one, mostly finished already;
- **pieces**: once the turn's audio is longer than `piece_s`, it is cut at the next pause; the piece is transcribed
  in the background while the caller goes on, and later pieces get the text before them as Whisper's previous-text
  prompt. After the caller stops, only the last piece is left to decode, however long they talked;
- **bounded**: a piece without any pause is cut at `3 * piece_s` anyway, so one caller's monologue costs one
  bounded transcription at a time and never stalls the shared Whisper for the other calls;
- **interim** transcripts go out about once a second for the live transcript, only when Whisper is idle;
- **settled**: most VAD stops are gaps inside a sentence, and the caller's voice is back at once. A stop's decode
  waits for `SETTLE_S` of audio after it with no voice in it (as the VAD judges voice); when the VAD confirms the
  caller went on, that stop is not decoded (the next stop's transcript covers its words). The wait fits in what the
  answer waits for anyway (the LLM's first token, the shortest end-of-turn wait).

It also tells the latency tracker where the speech really ended (`SpeechEndFrame`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InterimTranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.utils.time import time_now_iso8601

from agent.frames import SpeakPhraseFrame, SpeechEndFrame, TurnTranscriptionFrame
from agent.pcm import rms
from agent.speech.energy import trailing_silence_s
from agent.speech.whisper import WhisperTranscriber
from agent.text import words

DIP_S = 0.04  # this much low-energy audio after speech and a transcription starts
PRE_ROLL_S = 0.5  # audio kept from before the VAD's start (it decides only after some speech)
INTERIM_EVERY_S = 1.0
QUIET_FRACTION = 0.05  # a frame below this fraction of the recent speech level is quiet (a soft last word is not)
SPEECH_DECAY = 0.99  # per frame: the speech level forgets a loud moment over a couple of seconds
MIN_SPEECH_RMS = 60.0
TAIL_S = 0.2  # silence after the speech kept for Whisper (the last word's decay)
SETTLE_S = 0.032  # audio without voice after a VAD stop before it is decoded: one VAD window at 8 kHz
SETTLE_WALL_S = 0.3  # ... or this long by the wall clock, when the caller's audio stops coming

JobKind = Literal["early", "piece", "interim"]


@dataclass
class Job:
    """One background transcription of the current piece's audio up to `end` bytes."""

    kind: JobKind
    end: int
    task: asyncio.Task


class TurnSpeech:
    """The caller's audio since their turn began, and what is known of its words so far."""

    def __init__(self, pre_roll: bytes, bytes_per_s: int) -> None:
        self.pieces: list[str] = []  # the text of the pieces already cut off
        self.audio = bytearray(pre_roll)  # the current piece
        self.bytes_per_s = bytes_per_s
        self.voiced_end = len(self.audio)  # bytes into the piece where the last loud frame ended
        self.quiet_s = 0.0
        self.speech_level = 0.0
        self.job: Job | None = None
        self.ready: tuple[int, str] | None = None  # an early transcript of the piece: (bytes it covers, text)
        self.last_interim = time.monotonic()
        self.sent_words: list[str] = []  # the words already given to the user aggregator
        self.ended = False

    @property
    def previous_text(self) -> str:
        return " ".join(self.pieces)

    @property
    def trailing_silence_s(self) -> float:
        """Silence after the speech, by the same energy rule the phone client and the benchmark time turns with."""
        return trailing_silence_s(bytes(self.audio), self.bytes_per_s // 2)

    def covered(self, spoken_until: int) -> bool:
        """Whether the early transcript covers the audio up to `spoken_until` bytes into the piece."""
        return self.ready is not None and self.ready[0] >= spoken_until

    def spoken_until(self, vad_silence_s: float) -> int:
        """Where the speech ends, to be safe: after the last loud frame and after the VAD's own end of speech."""
        return max(self.voiced_end, len(self.audio) - int(vad_silence_s * self.bytes_per_s))

    def add(self, audio: bytes) -> None:
        self.audio += audio
        level = rms(audio)
        self.speech_level = max(level, self.speech_level * SPEECH_DECAY)
        if level >= max(MIN_SPEECH_RMS, QUIET_FRACTION * self.speech_level):
            self.voiced_end = len(self.audio)
            self.quiet_s = 0.0
        else:
            self.quiet_s += len(audio) / self.bytes_per_s

    def cut(self, end: int, text: str) -> None:
        """The piece up to `end` is transcribed: keep its text, drop its audio."""
        self.pieces.append(text)
        del self.audio[:end]
        self.voiced_end = max(0, self.voiced_end - end)
        self.ready = None

    def new_text(self, turn_text: str) -> str:
        """What `turn_text` adds to the words already sent (all of it after the first word Whisper revised)."""
        said = turn_text.split()
        sent = self.sent_words
        same = 0
        while same < min(len(said), len(sent)) and words(said[same]) == words(sent[same]):
            same += 1
        self.sent_words = said
        return " ".join(said[same:])


class StreamingWhisperSTTService(STTService):
    """Transcribes each turn while it is spoken, so the transcript is ready as the caller stops."""

    def __init__(
        self,
        transcriber: WhisperTranscriber,
        *,
        piece_s: float = 3.0,
        interim_results: bool = True,
        voiced: Callable[[], int] | None = None,
        **kwargs,
    ) -> None:
        """`voiced` counts the buffers the VAD has judged voice so far; without it every VAD stop is decoded."""
        super().__init__(settings=STTSettings(model="tiny.en", language="en"), ttfs_p99_latency=0.3, **kwargs)
        self._whisper = transcriber
        self._voiced = voiced
        self._audio_came = asyncio.Event()
        self._piece_s = piece_s
        self._interim_results = interim_results
        self._pre_roll: deque[bytes] = deque()
        self._turn: TurnSpeech | None = None
        self._speaking = False
        self._segments = 0  # VAD stops so far: each transcript names the one it answers
        self._final: asyncio.Task | None = None  # the last transcription after a VAD stop (they go out in order)

    def can_generate_metrics(self) -> bool:
        return True

    @property
    def _bytes_per_s(self) -> int:
        return self.sample_rate * 2

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        if self._turn is None:
            self._pre_roll.append(audio)
            while sum(map(len, self._pre_roll)) > PRE_ROLL_S * self._bytes_per_s:
                self._pre_roll.popleft()
        else:
            self._turn.add(audio)
            self._audio_came.set()
            if self._speaking:
                self._maybe_start_job(self._turn)
        yield None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = True
            if self._turn is None:
                self._turn = TurnSpeech(b"".join(self._pre_roll), self._bytes_per_s)
                self._pre_roll.clear()
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._turn is not None:
            self._speaking = False
            self._segments += 1
            await self.push_frame(SpeechEndFrame(silence_s=self._turn.trailing_silence_s))
            self._segment_ended(self._turn, self._turn.spoken_until(frame.stop_secs), self._segments)
        elif isinstance(frame, UserStoppedSpeakingFrame) and direction == FrameDirection.UPSTREAM and self._turn:
            self._turn.ended = True  # the turn is over: the next words start a new one
            self._turn = None

    def _segment_ended(self, turn: TurnSpeech, spoken_until: int, segment: int) -> None:
        """A VAD stop: transcribe the turn up to `spoken_until` bytes, after the previous stop's transcript."""
        self._final = self.create_task(self._transcribe_turn(turn, self._final, spoken_until, segment), "whisper-final")

    async def _transcribe_turn(
        self, turn: TurnSpeech, previous: asyncio.Task | None, spoken_until: int, segment: int
    ) -> None:
        """The turn's transcript after a VAD stop: the early one when no words came after it, else the last piece
        decoded now. Every VAD stop gets one `TurnTranscriptionFrame` naming it, in order, even when it adds nothing
        (noise the VAD took for speech): the end-of-turn strategy decides on the one of the last stop."""
        if previous:
            await asyncio.shield(previous)
        await self.start_processing_metrics()
        started = time.monotonic()
        waited = ""
        try:
            while turn.job and turn.job.kind != "interim":  # a piece being cut off is needed; an early one may do
                waited += turn.job.kind[0]
                await asyncio.shield(turn.job.task)
            job_s = time.monotonic() - started
            if turn.covered(spoken_until):
                assert turn.ready is not None
                tail = turn.ready[1]
                how = "early transcript"
            elif turn.pieces and turn.voiced_end == 0:
                tail, how = "", "nothing loud since the last piece"  # Whisper would make words up ("you")
            elif await self._caller_went_on(turn, segment):
                logger.debug(f"STT: segment {segment} not decoded: the caller went on")
                await self.stop_processing_metrics()
                return
            else:
                # Past the end of speech Whisper only hears silence, where it makes words up ("you").
                audio = bytes(turn.audio[: spoken_until + int(TAIL_S * turn.bytes_per_s)])
                tail = await asyncio.to_thread(self._whisper.transcribe, audio, self.sample_rate, turn.previous_text)
                turn.ready = (len(audio), tail)
                how = f"decoded {len(audio) / turn.bytes_per_s:.1f} s"
            logger.debug(
                f"STT: segment {segment} {how} in {(time.monotonic() - started) * 1000:.0f} ms"
                f" (waited {job_s * 1000:.0f} ms on {waited or 'nothing'})"
            )
        except Exception as e:  # the caller must not be left in silence: say sorry and let them repeat
            logger.opt(exception=e).error("STT: transcription failed; apologising")
            await self.push_frame(SpeakPhraseFrame(kind="apology"))
            tail = ""
        await self.stop_processing_metrics()
        turn_text = " ".join(filter(None, [*turn.pieces, tail])).strip()
        if turn.ended:  # the turn was closed without it (the controller's timeout): its words would land in the next
            logger.warning(f"STT: the transcript {turn_text!r} came after its turn ended; dropped")
            return
        frame = TurnTranscriptionFrame(turn.new_text(turn_text), self._user_id, time_now_iso8601(), finalized=True)
        frame.turn_text, frame.segment = turn_text, segment
        await self.push_frame(frame)

    async def _caller_went_on(self, turn: TurnSpeech, segment: int) -> bool:
        """Whether the caller spoke on after this VAD stop, so that its transcript is not needed: False once
        `SETTLE_S` of their audio has passed with no voice in it, True when the VAD confirms speech first."""
        if self._voiced is None:
            return False
        voiced, seen, quiet = self._voiced(), len(turn.audio), 0
        deadline = time.monotonic() + SETTLE_WALL_S
        while quiet < SETTLE_S * turn.bytes_per_s and time.monotonic() < deadline:
            if self._speaking or self._segments != segment:
                return True
            self._audio_came.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._audio_came.wait(), SETTLE_WALL_S)
            heard, seen = max(0, len(turn.audio) - seen), len(turn.audio)
            now_voiced = self._voiced()
            quiet = 0 if now_voiced != voiced else quiet + heard
            voiced = now_voiced
        return self._speaking or self._segments != segment

    # -- background transcriptions -------------------------------------------------------------------
    def _maybe_start_job(self, turn: TurnSpeech) -> None:
        if turn.job:
            return
        piece_bytes = int(self._piece_s * self._bytes_per_s)
        paused = turn.quiet_s >= DIP_S
        if (paused and len(turn.audio) >= piece_bytes) or len(turn.audio) >= 3 * piece_bytes:
            self._transcribe_in_background(turn, "piece")
        elif paused and turn.voiced_end and not turn.covered(turn.voiced_end):  # words not yet transcribed
            self._transcribe_in_background(turn, "early")
        elif self._interim_results and time.monotonic() - turn.last_interim >= INTERIM_EVERY_S:
            turn.last_interim = time.monotonic()
            self._transcribe_in_background(turn, "interim")

    def _transcribe_in_background(self, turn: TurnSpeech, kind: JobKind) -> None:
        end, audio, previous = len(turn.audio), bytes(turn.audio), turn.previous_text
        transcribe = self._whisper.transcribe_if_idle if kind == "interim" else self._whisper.transcribe

        async def run() -> None:
            try:
                text = await asyncio.to_thread(transcribe, audio, self.sample_rate, previous)
            finally:
                turn.job = None
            if text is None:
                return
            if kind == "piece":
                turn.cut(end, text)
            elif kind == "early":
                turn.ready = (end, text)
            elif text and turn is self._turn:
                interim = " ".join([*turn.pieces, text])
                await self.push_frame(InterimTranscriptionFrame(interim, self._user_id, time_now_iso8601()))
            if turn is self._turn and self._speaking:
                self._maybe_start_job(turn)

        turn.job = Job(kind, end, self.create_task(run(), f"whisper-{kind}"))
