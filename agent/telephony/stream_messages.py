"""What every carrier's media stream shares: JSON text messages keyed by `event` (`media` with a base64 payload,
`dtmf` with a digit, the carrier's mark echo, `stop`), read as a stranger might send them.

`CheckedStreamMessages` goes in front of one of pipecat's carrier serializers: anything malformed (not JSON, a
binary frame, an oversized or unknown message, one without an event name, bad base64, a field of the wrong type, a
digit that is no key of a keypad) is logged and dropped, never fatal, for every carrier alike; media and digits go
on to pipecat's serializer; the mark echo and the end of the stream go to callbacks.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar

from fastapi import WebSocket
from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import Frame

from agent.telephony.gate import StreamOpening
from agent.telephony.tokens import GateRefused

MAX_MESSAGE_CHARS = 64 * 1024
DTMF_DIGITS = frozenset(entry.value for entry in KeypadEntry)


class StreamProtocolError(GateRefused):
    """The peer did not open the stream the way its carrier does (each carrier names its own subclass)."""

    def __init__(self, detail: str, reason: str = "handshake") -> None:
        super().__init__(reason, detail)


def parse_message(text: str) -> dict[str, Any] | None:
    """A JSON object no larger than `MAX_MESSAGE_CHARS`, or None."""
    if len(text) > MAX_MESSAGE_CHARS:
        return None
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None
    return event if isinstance(event, dict) else None


async def read_opening(
    websocket: WebSocket, parse_start: Callable[[dict[str, Any]], StreamOpening], *, after_connected: bool
) -> StreamOpening:
    """The stream's opening: its first message after at most one `connected` (for carriers that send one; Plivo
    does not), read by the carrier's `parse_start`, with the messages kept as sent. GateRefused
    ("handshake") for a socket that closed, a binary frame or a malformed message before it."""
    messages: list[str] = []
    for _ in range(2 if after_connected else 1):
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise GateRefused("handshake", "the socket closed before the stream started")
        text = message.get("text")
        event = parse_message(text) if text is not None else None
        if event is None:
            detail = f"a binary or malformed message before the stream started: {str(text)[:60]!r}"
            raise GateRefused("handshake", detail)
        messages.append(text)
        if event.get("event") != "connected":
            return replace(parse_start(event), messages=tuple(messages))
    raise GateRefused("handshake", "no 'start' after 'connected'")


def payload_bytes(body: Any) -> bytes | None:
    """The decoded, non-empty base64 `payload` of a media object, or None."""
    payload = body.get("payload") if isinstance(body, dict) else None
    try:
        audio = base64.b64decode(payload, validate=True) if isinstance(payload, str) else b""
    except (binascii.Error, ValueError):
        return None
    return audio or None


class CheckedStreamMessages:
    """Mixin in front of a pipecat carrier serializer (see the module docstring). A carrier sets how its stream
    opens (`parse_start`, and whether a `connected` comes first), its mark echo's event name and where the echo
    keeps the mark's name."""

    carrier: ClassVar[str]
    parse_start: ClassVar[Callable[[dict[str, Any]], StreamOpening]]
    sends_connected: ClassVar[bool] = True
    mark_event: ClassVar[str] = "mark"
    stop_event: ClassVar[str | None] = "stop"

    @classmethod
    async def read_opening(cls, websocket: WebSocket) -> StreamOpening:
        """The stream's opening, read and parsed as this carrier sends it (unchecked: the gate checks it)."""
        return await read_opening(websocket, cls.parse_start, after_connected=cls.sends_connected)

    def __init__(
        self, *args: Any, on_mark: Callable[[str], Awaitable[None]], on_stop: Callable[[], Awaitable[None]], **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_mark = on_mark
        self._on_stop = on_stop

    def mark_name(self, event: dict[str, Any]) -> Any:
        body = event.get("mark")
        return body.get("name") if isinstance(body, dict) else None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            logger.warning(f"{self.carrier}: dropped a binary frame of {len(data)} bytes (the stream is JSON text)")
            return None
        event = parse_message(data)
        if event is None:
            logger.warning(
                f"{self.carrier}: dropped a malformed or oversized message ({len(data)} chars) {data[:60]!r}"
            )
            return None
        kind = event.get("event")
        if not isinstance(kind, str):  # {} or {"event": null} says nothing: never the end of a stream
            logger.warning(f"{self.carrier}: dropped a message without an event name")
            return None
        if kind == "media":
            if payload_bytes(event.get("media")) is None:
                logger.warning(f"{self.carrier}: dropped a media message without a base64 audio payload")
                return None
            return await super().deserialize(data)  # type: ignore[misc]
        if kind == "dtmf":
            body = event.get("dtmf")
            digit = body.get("digit") if isinstance(body, dict) else None
            if not isinstance(digit, str) or digit not in DTMF_DIGITS:
                logger.warning(f"{self.carrier}: dropped a dtmf message with digit {str(digit)[:10]!r}")
                return None
            return await super().deserialize(data)  # type: ignore[misc]
        if kind == self.mark_event:
            name = self.mark_name(event)
            if isinstance(name, str):
                await self._on_mark(name)
            return None
        if kind == self.stop_event:
            await self._on_stop()
            return None
        self.unexpected(kind, event)
        return None

    def unexpected(self, kind: Any, event: dict[str, Any]) -> None:
        logger.warning(f"{self.carrier}: ignored an unexpected {str(kind)[:30]!r} message")
