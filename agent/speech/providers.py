"""The registry of hosted speech providers, and the start-up check of the ones the settings choose."""

from __future__ import annotations

from agent.settings import Settings
from agent.speech.cartesia import CARTESIA
from agent.speech.deepgram import DEEPGRAM
from agent.speech.elevenlabs import ELEVENLABS
from agent.speech.hosted import HostedSpeech

HOSTED_SPEECH: dict[str, HostedSpeech] = {p.name: p for p in (DEEPGRAM, CARTESIA, ELEVENLABS)}


def chosen_hosted_speech(settings: Settings) -> list[HostedSpeech]:
    """The hosted providers `STT_PROVIDER` and `TTS_PROVIDER` name (none when both are local)."""
    names = (settings.stt_provider, settings.tts_provider)
    return [HOSTED_SPEECH[name] for name in names if name != "local"]


async def check_hosted_speech(settings: Settings) -> None:
    """Raises SettingsError naming the variable when a chosen provider lacks or refuses a setting."""
    for provider in chosen_hosted_speech(settings):
        await provider.check(settings)
