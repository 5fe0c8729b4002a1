"""ElevenLabs' multi-context TTS websocket (`/v1/text-to-speech/{voice}/multi-stream-input`) on 127.0.0.1, speaking
with the local voice.

The handshake needs `xi-api-key` and only the documented query parameters (`model_id` of a model that streams,
`output_format` of a raw PCM rate; `auto_mode`, `enable_logging`, `enable_ssml_parsing`, `inactivity_timeout`,
`sync_alignment`, `apply_text_normalization`, `language_code`, `seed`). Messages, each checked:

- `{text, context_id, voice_settings?, generation_config?, pronunciation_dictionary_locators?}`: text for a context
  (`" "` opens it; its settings only on its first message, else the socket is closed 1008); `{text: ""}` keeps alive;
- `{context_id, flush: true}` speaks what is buffered; `{context_id, close_context: true}` speaks the rest and
  answers `isFinal`; `{close_socket: true}` closes.

Text is spoken when it ends a sentence (or at once with `auto_mode=true`, or on a flush). Each reply carries one
spoken piece: base64 `audio`, and `alignment`/`normalizedAlignment` (chars with start times and durations in ms,
from the start of that piece), with `contextId`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from agent.speech.voices import Voice
from bench.speech_doubles.base import Connection, Jobs, Refused, WebsocketDouble
from bench.speech_doubles.voice import speak

PATH = re.compile(r"^/v1/text-to-speech/([A-Za-z0-9_-]{1,64})/multi-stream-input$")
MODELS = {"eleven_flash_v2_5", "eleven_flash_v2", "eleven_turbo_v2_5", "eleven_turbo_v2", "eleven_multilingual_v2"}
FORMATS = {"pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000"}
BOOLEAN = {"true", "false"}
PARAMETERS: dict[str, Callable[[str], bool]] = {
    "model_id": MODELS.__contains__,
    "output_format": FORMATS.__contains__,
    "auto_mode": BOOLEAN.__contains__,
    "enable_logging": BOOLEAN.__contains__,
    "enable_ssml_parsing": BOOLEAN.__contains__,
    "sync_alignment": BOOLEAN.__contains__,
    "inactivity_timeout": lambda v: v.isdigit() and 1 <= int(v) <= 180,
    "apply_text_normalization": {"auto", "on", "off"}.__contains__,
    "language_code": lambda v: re.fullmatch(r"[a-z]{2,3}", v) is not None,
    "seed": str.isdigit,
}
TEXT_FIELDS = {"text": str, "context_id": str, "voice_settings": dict, "generation_config": dict,
               "pronunciation_dictionary_locators": list, "flush": bool}  # fmt: skip
SENTENCE_END = re.compile(r"[.!?]\s*$")


class ElevenLabsDouble(WebsocketDouble[Voice]):
    """ElevenLabs' multi-context streaming TTS websocket, synthesising with the local voice."""

    def check(self, path: str, query: dict[str, str], headers: Headers) -> None:
        if not PATH.match(path):
            raise Refused(HTTPStatus.NOT_FOUND, f"no such endpoint {path}")
        self.check_key(headers.get("xi-api-key"))
        for name, value in query.items():
            if name not in PARAMETERS:
                raise Refused(HTTPStatus.BAD_REQUEST, f"unknown query parameter {name}")
            if not PARAMETERS[name](value):
                raise Refused(HTTPStatus.BAD_REQUEST, f"invalid value for {name}")
        if "model_id" not in query:
            raise Refused(HTTPStatus.BAD_REQUEST, "model_id is required")

    async def session(self, connection: Connection) -> None:
        query = self.handshakes[-1].query
        contexts = _Contexts(self, connection, query)
        worker = asyncio.create_task(contexts.jobs.work())
        try:
            async for message in connection.socket:
                try:
                    request = json.loads(message)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    await self.violation(connection, "a message that is not JSON")
                    return
                connection.received.append(request)
                if problem := _invalid(request):
                    await self.violation(connection, problem)
                    return
                if request.get("close_socket"):
                    await contexts.jobs.join()
                    await connection.socket.close(1000)
                    return
                if problem := contexts.take(request):
                    await self.violation(connection, problem)
                    return
        except ConnectionClosed:
            return
        finally:
            worker.cancel()


@dataclass
class _Context:
    buffered: str = ""
    closed: bool = False


class _Contexts:
    """One connection's contexts and the pieces waiting to be spoken, in order."""

    def __init__(self, double: ElevenLabsDouble, connection: Connection, query: dict[str, str]) -> None:
        self._double, self._connection = double, connection
        self.rate = int(query.get("output_format", "pcm_16000").removeprefix("pcm_"))
        self.auto_mode = query.get("auto_mode") == "true"
        self.contexts: dict[str, _Context] = {}
        self.jobs = Jobs()

    def take(self, request: dict[str, Any]) -> str | None:
        """Queue what `request` asks for; what is wrong with it in this context (None: nothing)."""
        context_id = request.get("context_id", "")
        context = self.contexts.get(context_id)
        if context and context.closed:
            return f"context {context_id} is closed"
        if context is None:
            if "text" not in request:
                return f"context {context_id} was never opened"
            context = self.contexts[context_id] = _Context()
        elif "voice_settings" in request or "generation_config" in request:
            return "voice_settings and generation_config go in a context's first message only"
        context.buffered += request.get("text", "")
        if request.get("close_context"):
            context.closed = True
        if context.buffered.strip() and (
            self.auto_mode or request.get("flush") or context.closed or SENTENCE_END.search(context.buffered)
        ):
            text, context.buffered = context.buffered.strip(), ""
            since = asyncio.get_running_loop().time()
            self.jobs.put(lambda: self._speak(context_id, text, since))
        if context.closed:
            self.jobs.put(lambda: self._reply({"isFinal": True, "contextId": context_id}))
        return None

    async def _speak(self, context_id: str, text: str, since: float) -> None:
        """Speak `text`, flushed at `since` (the event loop's time), as one audio message."""
        pieces = [spoken.pcm async for spoken in speak(self._double.backend, text, self.rate)]
        audio = b"".join(pieces)
        duration_ms = len(audio) / 2 / self.rate * 1000
        chars = list(text)
        step = duration_ms / len(chars)
        alignment = {
            "chars": chars,
            "charStartTimesMs": [round(i * step) for i in range(len(chars))],
            "charDurationsMs": [round((i + 1) * step) - round(i * step) for i in range(len(chars))],
        }
        message = {"audio": base64.b64encode(audio).decode(), "isFinal": None, "alignment": alignment,
                   "normalizedAlignment": alignment, "contextId": context_id}  # fmt: skip
        await self._double.pace(since)
        await self._reply(message)

    async def _reply(self, message: dict[str, Any]) -> None:
        await self._double.reply(self._connection, message)


def _invalid(request: object) -> str | None:
    """What is wrong with a message by ElevenLabs' documentation (None: nothing)."""
    if not isinstance(request, dict):
        return "a message that is not a JSON object"
    if request.get("close_socket") is True:
        return None if set(request) == {"close_socket"} else "close_socket goes alone"
    if request.get("close_context") is True:
        return None if set(request) == {"close_context", "context_id"} else "close_context needs context_id only"
    for name, value in request.items():
        if name not in TEXT_FIELDS:
            return f"unknown field {name}"
        if not isinstance(value, TEXT_FIELDS[name]):
            return f"{name} must be {TEXT_FIELDS[name].__name__}"
    if "text" not in request and not request.get("flush"):
        return "a message needs text, flush, close_context or close_socket"
    return None
