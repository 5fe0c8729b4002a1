"""Replay entry: play a recorded call (WAV) into the voice pipeline in real time, as a caller would, and record
what the agent says back on the same timeline.

`ReplayTransport` is the pipecat transport: its input paces 20 ms frames from the file (then silence while the
agent answers); its output "plays" bot audio in real time into a buffer aligned with the caller's audio.
`replay_call()` runs one file and returns the per-turn report.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from pipecat.frames.frames import InputAudioRawFrame, OutputAudioRawFrame, StartFrame
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from agent.latency.observer import TurnLatencyObserver
from agent.latency.turns import Turn, summarize_turns
from agent.protocols.websocket_transport import AudioHook, audio_kind
from agent.runtime import AgentRuntime
from pipelines.voice import VoiceCall, build_voice_call, run_voice_call

FRAME_S = 0.02
SUPPORTED_RATES = (8000, 16000)


class ReplayInputError(ValueError):
    """The replay file is not a recording the agent can take."""


def read_call_wav(path: str | Path) -> tuple[bytes, int]:
    """16-bit mono PCM and its rate from a WAV file; a clear ReplayInputError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ReplayInputError(f"{path}: no such file")
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width, frames = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            pcm = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise ReplayInputError(f"{path}: not a WAV recording ({e})") from None
    if channels != 1:
        raise ReplayInputError(f"{path}: {channels} channels; a call recording must be mono")
    if width != 2:
        raise ReplayInputError(f"{path}: {8 * width}-bit samples; 16-bit PCM is required")
    if rate not in SUPPORTED_RATES:
        raise ReplayInputError(f"{path}: {rate} Hz; use 16000 Hz or 8000 Hz")
    if frames == 0:
        raise ReplayInputError(f"{path}: the recording is empty")
    return pcm, rate


class ReplayInput(BaseInputTransport):
    def __init__(self, pcm: bytes, sample_rate: int, params: TransportParams, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self._pcm = pcm
        self._rate = sample_rate
        self._task: asyncio.Task | None = None
        self.started_at: float | None = None
        self.finished = asyncio.Event()
        self.stop_feeding = asyncio.Event()

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._task = self.create_task(self._feed())

    async def _feed(self) -> None:
        step = int(self._rate * FRAME_S) * 2
        silence = bytes(step)
        self.started_at = time.monotonic()
        index = 0
        while not self.stop_feeding.is_set():
            chunk = self._pcm[index * step : (index + 1) * step]
            if len(chunk) < step:
                if chunk == b"" and not self.finished.is_set():
                    self.finished.set()
                chunk = chunk + silence[len(chunk) :]
            await self.push_audio_frame(InputAudioRawFrame(audio=chunk, sample_rate=self._rate, num_channels=1))
            index += 1
            await asyncio.sleep(max(0.0, self.started_at + index * FRAME_S - time.monotonic()))

    async def cleanup(self) -> None:
        if self._task:
            await self.cancel_task(self._task)
            self._task = None
        await super().cleanup()


class ReplayOutput(BaseOutputTransport):
    """Plays bot audio in real time into a buffer on the caller's timeline."""

    def __init__(
        self,
        timeline_start: ReplayInput,
        on_audio_written: AudioHook,
        params: TransportParams,
        **kwargs,
    ) -> None:
        super().__init__(params, **kwargs)
        self._input = timeline_start
        self._on_audio_written = on_audio_written
        self.audio = bytearray()
        self.last_audio_at = 0.0
        self._next_write = 0.0

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        now = time.monotonic()
        origin = self._input.started_at or now
        position = int((now - origin) * self.sample_rate) * 2
        if position > len(self.audio):
            self.audio.extend(bytes(position - len(self.audio)))
        self.audio[position : position + len(frame.audio)] = frame.audio
        duration = len(frame.audio) / 2 / self.sample_rate
        self._next_write = max(self._next_write, now) + duration
        self.last_audio_at = now
        await self._on_audio_written(audio_kind(frame))
        await asyncio.sleep(max(0.0, self._next_write - time.monotonic()))
        return True


class ReplayTransport(BaseTransport):
    def __init__(self, pcm: bytes, sample_rate: int, out_sample_rate: int, on_audio_written: AudioHook) -> None:
        super().__init__()
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=sample_rate,
            audio_out_enabled=True,
            audio_out_sample_rate=out_sample_rate,
        )
        self._input = ReplayInput(pcm, sample_rate, params, name="replay-in")
        self._output = ReplayOutput(self._input, on_audio_written, params, name="replay-out")

    def input(self) -> ReplayInput:
        return self._input

    def output(self) -> ReplayOutput:
        return self._output


@dataclass
class ReplayResult:
    turns: list[dict[str, Any]]
    reply_audio: bytes
    reply_sample_rate: int
    summary: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"turns": self.turns, "summary": self.summary}, indent=2)


CallBuilder = Callable[..., VoiceCall]


async def replay_call(
    runtime: AgentRuntime, path: str | Path, *, max_tail_s: float = 20.0, build: CallBuilder = build_voice_call
) -> ReplayResult:
    """Replay one recording. `build` assembles the pipeline (the benchmark passes a vanilla pipecat one)."""
    pcm, rate = read_call_wav(path)
    out_rate = 16000
    latency = TurnLatencyObserver(runtime.budget)
    transport = ReplayTransport(pcm, rate, out_rate, latency.audio_sent)
    call = build(runtime, transport, latency, sample_rate_in=rate, sample_rate_out=out_rate)
    runner = asyncio.create_task(run_voice_call(call))
    try:
        await _wait_until_answered(call, transport, max_tail_s)
    finally:
        transport.input().stop_feeding.set()
        await call.worker.cancel(reason="replay finished")
        await runner
    turns = call.latency.reports
    audio = bytes(transport.output().audio)
    return ReplayResult(
        turns=turns,
        reply_audio=audio,
        reply_sample_rate=out_rate,
        summary=summarize_turns(turns),
        messages=[dict(m) for m in call.context.get_messages()],
    )


async def _wait_until_answered(call: VoiceCall, transport: ReplayTransport, max_tail_s: float) -> None:
    """After the file ends: wait until every heard turn was answered and the bot has gone quiet."""
    await transport.input().finished.wait()
    deadline = time.monotonic() + max_tail_s
    ended_at = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = time.monotonic()
        turns = call.latency.turns
        pending = [t for i, t in enumerate(turns, 1) if _unfinished(t, last=i == len(turns))]
        quiet = now - max(transport.output().last_audio_at, ended_at) > 0.5
        if not pending and quiet and now - ended_at > 1.5:
            return
    logger.warning(f"replay: gave up waiting for the agent after {max_tail_s:.0f} s of tail")


def _unfinished(turn: Turn, last: bool) -> bool:
    """A transcribed turn the agent may still answer, or whose answer is still being written (its completion's
    stats come last: a slow model can pause between clauses for longer than the quiet the replay waits for). Only
    the last turn can be: once the caller went on, the turn before is over."""
    if not last or not turn.user_text or turn.cut or turn.error:
        return False
    return not turn.llm if turn.answered else True


def write_wav(path: str | Path, pcm: bytes, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
