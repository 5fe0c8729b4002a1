"""Cartesia streaming TTS: its settings and the `/tts/websocket` pipecat's `CartesiaTTSService` opens."""

from __future__ import annotations

from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.cartesia.tts import CartesiaTTSService

from agent.settings import Settings
from agent.speech.hosted import Handshake, HostedSpeech
from agent.speech.standby_voice import StandbyVoice
from agent.speech.voices import Voice

API_VERSION = "2026-03-01"  # the Cartesia-Version pipecat 1.14's service speaks


def tts_handshake(settings: Settings) -> Handshake:
    return Handshake(
        url=f"{settings.cartesia_base_url}/tts/websocket",
        headers={"X-API-Key": settings.cartesia_api_key.get_secret_value(), "Cartesia-Version": API_VERSION},
    )


class CartesiaWithStandby(StandbyVoice, CartesiaTTSService):
    """pipecat's Cartesia service with the local voice standing by for the call (see `standby_voice`)."""


def build_tts(settings: Settings, voice: Voice) -> FrameProcessor:
    service = CartesiaWithStandby(
        api_key=settings.cartesia_api_key.get_secret_value(),
        url=f"{settings.cartesia_base_url}/tts/websocket",
        settings=CartesiaTTSService.Settings(
            voice=settings.cartesia_voice, model=settings.cartesia_model, language=settings.cartesia_language
        ),
    )
    service.stand_by(voice, provider="cartesia", timeout_s=settings.hosted_speech_timeout_ms / 1000)
    return service


CARTESIA = HostedSpeech(
    name="cartesia",
    kind="tts",
    required=("cartesia_api_key", "cartesia_voice", "cartesia_model"),
    handshake=tts_handshake,
    build=build_tts,
)
