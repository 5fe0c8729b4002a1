"""Deepgram live transcription: its settings and the `/v1/listen` websocket pipecat's `DeepgramSTTService` opens."""

from __future__ import annotations

from urllib.parse import urlencode

from pipecat.processors.frame_processor import FrameProcessor

from agent.settings import Settings
from agent.speech.hosted import Handshake, HostedSpeech
from agent.speech.voices import Voice

SAMPLE_RATE = 16_000


def listen_handshake(settings: Settings) -> Handshake:
    query = urlencode(
        {
            "model": settings.deepgram_model,
            "language": settings.deepgram_language,
            "encoding": "linear16",
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
        }
    )
    return Handshake(
        url=f"{settings.deepgram_base_url}/v1/listen?{query}",
        headers={"Authorization": f"Token {settings.deepgram_api_key.get_secret_value()}"},
        goodbye='{"type": "CloseStream"}',
    )


def build_stt(settings: Settings, _voice: Voice) -> FrameProcessor:
    from agent.speech.deepgram_stt import DeepgramTurnSTTService  # Deepgram's SDK: the optional `hosted` extra

    return DeepgramTurnSTTService(settings)


DEEPGRAM = HostedSpeech(
    name="deepgram",
    kind="stt",
    required=("deepgram_api_key", "deepgram_model", "deepgram_language"),
    handshake=listen_handshake,
    build=build_stt,
)
