"""The local voice standing by inside a hosted TTS service, so a hosted failure never leaves the caller in silence.

`StandbyVoice` is mixed into pipecat's websocket TTS services (Cartesia, ElevenLabs). It counts, per audio context,
the words sent to the provider and the words it has timed (its word timestamps come with its audio). The provider
is abandoned for the rest of the call when it reports an error (a refused key, a broken socket, an error message),
closes its socket (pipecat would reconnect and drop the open contexts), or stalls: words outstanding and nothing
from it for `timeout_s` since the last text or audio. The words it had not spoken are then spoken by the local
voice, and every later text of the call goes to the local voice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.tts_service import TTSService
from pipecat.utils.context.word_timestamp_tracker import WordTimestamp

from agent.speech.tts import speak_locally
from agent.speech.voices import Voice


@dataclass
class _Context:
    """What one audio context was sent and has given back."""

    sent: list[str] = field(default_factory=list)  # words sent to the provider
    timed: int = 0  # words the provider has timed (spoken)
    audio_s: float = 0.0  # audio received so far
    text_at: float = field(default_factory=time.monotonic)  # when text was last sent
    progress_at: float = 0.0  # when audio or word times last came

    def stalled(self, now: float, timeout_s: float) -> bool:
        """Words not spoken yet, and nothing from the provider for `timeout_s` since the last text or audio."""
        return len(self.sent) > self.timed and now - max(self.text_at, self.progress_at) >= timeout_s


class StandbyVoice(TTSService):
    """Mix in before a pipecat websocket TTS service; call `stand_by(...)` from the subclass's `__init__`."""

    def stand_by(self, voice: Voice, *, provider: str, timeout_s: float) -> None:
        self._standby_voice = voice
        self._provider: str | None = provider  # None once this call fell back to the local voice
        self._standby_timeout_s = timeout_s
        self._sent: dict[str, _Context] = {}
        self._watchdog: asyncio.Task | None = None

    @property
    def is_usable(self) -> bool:
        """Once the call fell back, the local voice does the work: a provider's permanent error (a refused key)
        must not make pipecat stop giving this service text."""
        return self._provider is None or super().is_usable

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        if self._provider is None:
            context = self._sent.get(context_id)
            offset_s = context.audio_s if context else 0.0
            async for frame in speak_locally(self, self._standby_voice, text, context_id, offset_s):
                yield frame
            return
        context = self._sent.setdefault(context_id, _Context())
        context.sent += text.split()
        context.text_at = time.monotonic()
        if self._watchdog is None:
            self._watchdog = self.create_task(self._watch(), "hosted-tts-watchdog")
        async for frame in super().run_tts(text, context_id):
            if self._provider is None:
                return  # it failed while sending: the words are spoken locally
            if not isinstance(frame, ErrorFrame):
                yield frame

    async def append_to_audio_context(self, context_id: str | None, frame: Frame | WordTimestamp | None) -> None:
        context = self._sent.get(context_id or "")
        if context and isinstance(frame, TTSAudioRawFrame):
            context.audio_s += len(frame.audio) / 2 / frame.sample_rate
            context.progress_at = time.monotonic()
        elif context and isinstance(frame, WordTimestamp):
            context.timed += 1
            context.progress_at = time.monotonic()
        await super().append_to_audio_context(context_id, frame)

    async def push_error_frame(self, error: ErrorFrame, *args, **kwargs) -> None:
        await super().push_error_frame(error, *args, **kwargs)
        await self._fall_back(f"failed ({error.error})")

    async def _reconnect_websocket(self, attempt_number: int) -> bool:
        await self._fall_back("closed its socket mid-call")  # before the reconnection drops the open contexts
        return await super()._reconnect_websocket(attempt_number)

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        self._sent.pop(context_id, None)  # the caller barged in: nothing of it is owed
        await super().on_audio_context_interrupted(context_id)

    async def on_audio_context_completed(self, context_id: str) -> None:
        if self._provider is not None:
            self._sent.pop(context_id, None)
        await super().on_audio_context_completed(context_id)

    async def cleanup(self) -> None:
        if self._watchdog:
            await self.cancel_task(self._watchdog)
            self._watchdog = None
        await super().cleanup()

    async def _watch(self) -> None:
        while self._provider is not None:
            await asyncio.sleep(self._standby_timeout_s / 4)
            now = time.monotonic()
            if any(c.stalled(now, self._standby_timeout_s) for c in self._sent.values()):
                ms = self._standby_timeout_s * 1000
                await self._fall_back(f"sent no audio for {ms:.0f} ms with words outstanding")

    async def _fall_back(self, reason: str) -> None:
        if self._provider is None:
            return
        logger.warning(f"TTS: {self._provider} {reason}; the local voice speaks the rest of this call")
        self._provider = None
        owed = [(context_id, " ".join(c.sent[c.timed :])) for context_id, c in self._sent.items()]
        self.create_task(self._speak_owed([(c, text) for c, text in owed if text]), "local-voice-takeover")

    async def _speak_owed(self, owed: list[tuple[str, str]]) -> None:
        """The words each context was sent and the provider never spoke, in the local voice, each in a context of
        its own (the provider's may be closing: a reconnection ends them)."""
        for context_id, text in owed:
            local_id = f"{context_id}-local"
            await self.create_audio_context(local_id)
            async for frame in speak_locally(self, self._standby_voice, text, local_id, 0.0):
                if isinstance(frame, TTSAudioRawFrame):
                    await self.append_to_audio_context(local_id, frame)
                else:
                    await self.push_frame(frame)
            await self.remove_audio_context(local_id)
