"""Cartesia's TTS websocket (`wss://api.cartesia.ai/tts/websocket`) on 127.0.0.1, speaking with the local voice.

The handshake needs `X-API-Key` and a `Cartesia-Version` Cartesia has published. Each generation request is checked
field by field (`transcript`, `context_id`, `model_id`, `voice: {mode: id, id}`, `output_format: {container: raw,
encoding, sample_rate}`, and the optional `continue`, `add_timestamps`, `use_normalized_timestamps`, `language`,
`max_buffer_delay_ms`, `generation_config`, `pronunciation_dict_id`); a bad one gets an `error` message, as Cartesia
sends. Replies per context: base64 `chunk`s, `timestamps` (words with start and end, in seconds from the context's
start) when asked for, and `done` once a request with `continue: false` is spoken. `{context_id, cancel: true}`
stops a context's output.
"""

from __future__ import annotations

import asyncio
import base64
import json
from http import HTTPStatus
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from agent.speech.voices import Voice
from bench.speech_doubles.base import Connection, Jobs, Refused, WebsocketDouble
from bench.speech_doubles.voice import speak

VERSIONS = {"2024-06-10", "2024-11-13", "2025-04-16", "2026-03-01"}
MODELS = {"sonic-3.6", "sonic-3", "sonic-2", "sonic-turbo", "sonic"}
RATES = {8000, 16000, 22050, 24000, 44100, 48000}
REQUIRED = {"transcript": str, "context_id": str, "model_id": str, "voice": dict, "output_format": dict}
OPTIONAL = {
    "continue": bool, "add_timestamps": bool, "use_normalized_timestamps": bool, "language": str,
    "max_buffer_delay_ms": int, "generation_config": dict, "pronunciation_dict_id": str,
}  # fmt: skip


class CartesiaDouble(WebsocketDouble[Voice]):
    """Cartesia's streaming TTS websocket, synthesising with the local voice."""

    def check(self, path: str, query: dict[str, str], headers: Headers) -> None:
        if path != "/tts/websocket":
            raise Refused(HTTPStatus.NOT_FOUND, f"no such endpoint {path}")
        if unknown := set(query) - {"api_key", "cartesia_version"}:
            raise Refused(HTTPStatus.BAD_REQUEST, f"unknown query parameter {sorted(unknown)[0]}")
        self.check_key(headers.get("X-API-Key") or query.get("api_key"))
        if (headers.get("Cartesia-Version") or query.get("cartesia_version")) not in VERSIONS:
            raise Refused(HTTPStatus.BAD_REQUEST, "a known Cartesia-Version is required")

    async def session(self, connection: Connection) -> None:
        contexts = _Contexts(self, connection)
        worker = asyncio.create_task(contexts.jobs.work())
        try:
            async for message in connection.socket:
                if isinstance(message, bytes):
                    await self.violation(connection, "a binary message on the TTS websocket")
                    return
                try:
                    request = json.loads(message)
                except json.JSONDecodeError:
                    await self.violation(connection, "a message that is not JSON")
                    return
                connection.received.append(request)
                if not isinstance(request, dict):
                    await self.violation(connection, "a message that is not a JSON object")
                    return
                await contexts.take(request)
        except ConnectionClosed:
            return
        finally:
            worker.cancel()


class _Contexts:
    """One connection's contexts: their place in the audio, and the requests waiting to be spoken in order."""

    def __init__(self, double: CartesiaDouble, connection: Connection) -> None:
        self._double, self._connection = double, connection
        self.offset_s: dict[str, float] = {}  # audio spoken so far per context
        self.cancelled: set[str] = set()
        self.done: set[str] = set()
        self.jobs = Jobs()

    async def take(self, request: dict[str, Any]) -> None:
        context_id = request.get("context_id")
        if request.get("cancel") is True:
            if set(request) != {"context_id", "cancel"} or not isinstance(context_id, str):
                await self._error(context_id, "a cancel request holds context_id and cancel only")
            else:
                self.cancelled.add(context_id)
            return
        if problem := _invalid(request):
            await self._error(context_id, problem)
            return
        if context_id in self.done or context_id in self.cancelled:
            await self._error(context_id, f"context {context_id} is already finished")
            return
        if not request.get("continue", False):
            self.done.add(context_id)
        since = asyncio.get_running_loop().time()
        self.jobs.put(lambda: self._speak(request, since))

    async def _speak(self, request: dict[str, Any], since: float) -> None:
        """Speak one generation request, received at `since` (the event loop's time)."""
        context_id, text = request["context_id"], request["transcript"]
        rate = request["output_format"]["sample_rate"]
        offset = self.offset_s.setdefault(context_id, 0.0)
        if text.strip():
            async for spoken in speak(self._double.backend, text, rate, offset):
                if context_id in self.cancelled:
                    return
                await self._double.pace(since)  # the first chunk at the published speed, the rest at once
                data = base64.b64encode(spoken.pcm).decode()
                chunk = {"type": "chunk", "context_id": context_id, "status_code": 206, "done": False, "data": data}
                if not await self._reply(chunk):
                    return
                self.offset_s[context_id] += len(spoken.pcm) / 2 / rate
                if request.get("add_timestamps") and spoken.words:
                    words, starts, ends = zip(*spoken.words, strict=True)
                    timestamps = {"words": list(words), "start": list(starts), "end": list(ends)}
                    message = {"type": "timestamps", "context_id": context_id, "status_code": 206, "done": False,
                               "word_timestamps": timestamps}  # fmt: skip
                    if not await self._reply(message):
                        return
        if not request.get("continue", False) and context_id not in self.cancelled:
            await self._reply({"type": "done", "context_id": context_id, "status_code": 206, "done": True})

    async def _reply(self, message: dict[str, Any]) -> bool:
        return await self._double.reply(self._connection, message)

    async def _error(self, context_id: object, problem: str) -> None:
        self._double.violations.append(problem)
        message = {"type": "error", "context_id": context_id, "status_code": 400, "done": True, "error": problem}
        await self._reply(message)


def _invalid(request: dict[str, Any]) -> str | None:
    """What is wrong with a generation request, by Cartesia's documentation (None: nothing)."""
    for name, kind in REQUIRED.items():
        if not isinstance(request.get(name), kind):
            return f"{name} is required ({kind.__name__})"
    for name in set(request) - set(REQUIRED):
        if name not in OPTIONAL:
            return f"unknown field {name}"
        if not isinstance(request[name], OPTIONAL[name]):
            return f"{name} must be {OPTIONAL[name].__name__}"
    if not request["context_id"]:
        return "context_id must not be empty"
    if request["model_id"] not in MODELS:
        return f"unknown model_id {request['model_id']}"
    voice = request["voice"]
    if voice.get("mode") != "id" or not isinstance(voice.get("id"), str) or not voice["id"] or len(voice) != 2:
        return "voice must be {mode: id, id: <voice id>}"
    output = request["output_format"]
    if output.get("container") != "raw" or output.get("encoding") != "pcm_s16le":
        return "the double speaks raw pcm_s16le only"
    if output.get("sample_rate") not in RATES or len(output) != 3:
        return "output_format.sample_rate must be one Cartesia offers"
    return None
