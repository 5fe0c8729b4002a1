"""A VAD stop inside a sentence is not decoded when the caller's voice is back at once: frame-level, with pipecat's
`run_test`, the real VAD and the shared Whisper on a real recording played in real time (20 ms frames at 8 kHz)."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import InputAudioRawFrame, VADUserStoppedSpeakingFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.tests.utils import SleepFrame, run_test

from agent.frames import TurnTranscriptionFrame
from agent.settings import Settings
from agent.speech.stt import StreamingWhisperSTTService
from agent.turns.vad import build_vad
from bench.audio import build_call, transcripts, word_error_rate
from pipelines.replay import read_call_wav

pytestmark = pytest.mark.slow  # each plays a 9 s recording in real time

RATE = 8000
FRAME_BYTES = RATE // 50 * 2


@pytest.fixture
def whisper_calls(speech, monkeypatch):
    """Seconds of audio of every transcription the shared Whisper is asked for."""
    calls: list[float] = []
    transcribe = speech.transcriber.transcribe

    def counted(pcm: bytes, sample_rate: int, previous_text: str = "") -> str:
        calls.append(len(pcm) / 2 / sample_rate)
        return transcribe(pcm, sample_rate, previous_text)

    monkeypatch.setattr(speech.transcriber, "transcribe", counted)
    return calls


async def transcribe_live(speech, path, *, settle: bool) -> tuple[int, list[TurnTranscriptionFrame]]:
    """Play the recording through the VAD and the STT as a phone stream sends it: the VAD stops it saw, and the
    transcripts that went down."""
    pcm, rate = read_call_wav(path)
    assert rate == RATE
    vad = build_vad(Settings.load(None), RATE)
    stt = StreamingWhisperSTTService(
        speech.transcriber, interim_results=False, voiced=(lambda: vad.voiced_buffers) if settle else None
    )
    frames = []
    for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        frames += [InputAudioRawFrame(pcm[start : start + FRAME_BYTES], RATE, 1), SleepFrame(sleep=0.02)]
    down, _ = await run_test(
        Pipeline([VADProcessor(vad_analyzer=vad), stt]),
        frames_to_send=[*frames, SleepFrame(sleep=2.0)],  # time for the last decodes on a busy machine
        pipeline_params=PipelineParams(audio_in_sample_rate=RATE),
    )
    stops = sum(isinstance(f, VADUserStoppedSpeakingFrame) for f in down)
    return stops, [f for f in down if isinstance(f, TurnTranscriptionFrame)]


async def test_stops_the_caller_speaks_on_from_are_not_decoded(speech, whisper_calls, tmp_path):
    call = build_call(tmp_path / "dashwood.wav", [0.3, "dashwood.wav", 1.2], rate=RATE)
    stops, transcribed = await transcribe_live(speech, call, settle=True)
    assert stops >= 4, stops  # the VAD lets go at the gaps between the words of this one sentence
    assert len(whisper_calls) <= stops - 2, (stops, whisper_calls)  # most of those gaps cost no decode
    last = transcribed[-1]
    assert last.segment == stops  # the caller's last stop is transcribed, with the whole sentence
    assert word_error_rate(transcripts()["dashwood.wav"], last.turn_text) <= 0.25, last.turn_text


async def test_without_the_vads_count_every_stop_is_transcribed(speech, whisper_calls, tmp_path):
    call = build_call(tmp_path / "dashwood.wav", [0.3, "dashwood.wav", 1.2], rate=RATE)
    stops, transcribed = await transcribe_live(speech, call, settle=False)
    assert [f.segment for f in transcribed] == list(range(1, stops + 1))
