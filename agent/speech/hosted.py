"""What a hosted speech provider declares, and the start-up check of its key.

Each provider module (`deepgram`, `cartesia`, `elevenlabs`) declares one `HostedSpeech`: the settings it needs and
the websocket handshake its pipecat service opens. At start-up that handshake is made once against the configured
origin: a missing or refused key, voice or model stops start-up with one line naming the variable; a provider that
is merely unreachable is logged and start-up goes on (calls then speak with the local models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from loguru import logger
from pipecat.processors.frame_processor import FrameProcessor
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent.settings import Settings, SettingsError
from agent.speech.voices import Voice

HANDSHAKE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Handshake:
    """The websocket request a provider's streaming service opens: its URL and its authentication headers."""

    url: str
    headers: dict[str, str]
    goodbye: str | None = None  # a message that ends the session cleanly, where the protocol has one


@dataclass(frozen=True)
class HostedSpeech:
    """A hosted STT or TTS provider: its name, the settings it needs, its handshake and its pipecat service."""

    name: str
    kind: Literal["stt", "tts"]
    required: tuple[str, ...]  # settings fields that must be set, e.g. ("deepgram_api_key",)
    handshake: Callable[[Settings], Handshake]
    build: Callable[[Settings, Voice], FrameProcessor]  # the call's service (a TTS keeps the local voice by it)

    @property
    def switch(self) -> str:
        return f"{self.kind.upper()}_PROVIDER={self.name}"

    def missing(self, settings: Settings) -> list[str]:
        """The required variables left empty."""
        values = {name: getattr(settings, name) for name in self.required}
        empty = [name for name, value in values.items() if not _secret_or_str(value)]
        return [name.upper() for name in empty]

    async def check(self, settings: Settings) -> None:
        """Open and close the provider's websocket once. Raises SettingsError for a missing or refused setting."""
        if missing := self.missing(settings):
            raise SettingsError(f"{self.switch} needs {', '.join(missing)}")
        handshake = self.handshake(settings)
        key_env = self.required[0].upper()
        try:
            async with connect(
                handshake.url, additional_headers=handshake.headers, open_timeout=HANDSHAKE_TIMEOUT_S
            ) as socket:
                if handshake.goodbye:
                    await socket.send(handshake.goodbye)
        except InvalidStatus as e:
            status = e.response.status_code
            if status in (401, 403):
                raise SettingsError(f"{key_env} was rejected by {self.name} (HTTP {status})") from None
            if 400 <= status < 500:
                names = ", ".join(n.upper() for n in self.required[1:]) or "its settings"
                raise SettingsError(f"{self.name} refused the connection (HTTP {status}): check {names}") from None
            logger.warning(f"{self.name} is unavailable at start-up (HTTP {status}); calls will use the local model")
        except (OSError, TimeoutError) as e:
            logger.warning(
                f"{self.name} is unreachable at start-up ({type(e).__name__}); calls will use the local model"
            )


def _secret_or_str(value: object) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
