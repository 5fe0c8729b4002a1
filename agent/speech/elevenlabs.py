"""ElevenLabs streaming TTS: its settings and the multi-context websocket pipecat's `ElevenLabsTTSService` opens."""

from __future__ import annotations

from urllib.parse import urlencode

from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService

from agent.settings import Settings
from agent.speech.hosted import Handshake, HostedSpeech
from agent.speech.standby_voice import StandbyVoice
from agent.speech.voices import Voice

OUTPUT_FORMAT = "pcm_16000"


def stream_handshake(settings: Settings) -> Handshake:
    query = urlencode({"model_id": settings.elevenlabs_model, "output_format": OUTPUT_FORMAT})
    return Handshake(
        url=f"{settings.elevenlabs_base_url}/v1/text-to-speech/{settings.elevenlabs_voice}/multi-stream-input?{query}",
        headers={"xi-api-key": settings.elevenlabs_api_key.get_secret_value()},
    )


class ElevenLabsWithStandby(StandbyVoice, ElevenLabsTTSService):
    """pipecat's ElevenLabs service with the local voice standing by for the call (see `standby_voice`)."""


def build_tts(settings: Settings, voice: Voice) -> FrameProcessor:
    service = ElevenLabsWithStandby(
        api_key=settings.elevenlabs_api_key.get_secret_value(),
        url=settings.elevenlabs_base_url,
        settings=ElevenLabsTTSService.Settings(
            voice=settings.elevenlabs_voice, model=settings.elevenlabs_model, language=settings.elevenlabs_language
        ),
    )
    service.stand_by(voice, provider="elevenlabs", timeout_s=settings.hosted_speech_timeout_ms / 1000)
    return service


ELEVENLABS = HostedSpeech(
    name="elevenlabs",
    kind="tts",
    required=("elevenlabs_api_key", "elevenlabs_voice", "elevenlabs_model"),
    handshake=stream_handshake,
    build=build_tts,
)
