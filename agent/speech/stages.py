"""The call's speech stages as the settings choose them: the local models, or a hosted provider with the local
model standing by behind it (`STT_PROVIDER`, `TTS_PROVIDER`)."""

from __future__ import annotations

from collections.abc import Callable

from pipecat.processors.frame_processor import FrameProcessor

from agent.settings import Settings
from agent.speech.providers import HOSTED_SPEECH
from agent.speech.standby import StandbyWhisperSTTService
from agent.speech.stt import StreamingWhisperSTTService
from agent.speech.tts import LocalTTSService
from agent.speech.voices import Voice
from agent.speech.whisper import WhisperTranscriber


def speech_to_text(
    settings: Settings,
    transcriber: WhisperTranscriber,
    voice: Voice,
    *,
    interim: bool,
    voiced: Callable[[], int] | None = None,
) -> list[FrameProcessor]:
    """The STT processors, in pipeline order. `voiced`: the VAD's count of voiced buffers (see `stt.py`)."""
    piece_s = settings.stt_piece_ms / 1000
    if settings.stt_provider == "local":
        return [StreamingWhisperSTTService(transcriber, piece_s=piece_s, interim_results=interim, voiced=voiced)]
    standby = StandbyWhisperSTTService(
        transcriber,
        provider=settings.stt_provider,
        timeout_s=settings.hosted_speech_timeout_ms / 1000,
        piece_s=piece_s,
        interim_results=interim,
        voiced=voiced,
    )
    return [HOSTED_SPEECH[settings.stt_provider].build(settings, voice), standby]


def text_to_speech(settings: Settings, voice: Voice) -> FrameProcessor:
    """The TTS processor."""
    if settings.tts_provider == "local":
        return LocalTTSService(voice)
    return HOSTED_SPEECH[settings.tts_provider].build(settings, voice)
