"""Twilio Media Streams, as Twilio speaks it: the `connected`/`start` handshake, `media` (base64 mu-law 8 kHz,
20 ms), `dtmf`, `mark`, `stop` from Twilio; `media`, `mark` and `clear` back. Plus the webhook side: TwiML and
`X-Twilio-Signature` (computed and checked by the `twilio` package's RequestValidator).

Anything malformed (not JSON, a binary frame, an oversized or unknown message, bad base64, a field of the wrong
type) is logged and dropped: a bad message never ends the call, let alone the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from fastapi import WebSocket
from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import Frame
from pipecat.serializers.twilio import TwilioFrameSerializer
from twilio.request_validator import RequestValidator

from agent.telephony.admission import AdmissionRefused

TWILIO_RATE = 8000
MAX_MESSAGE_CHARS = 64 * 1024
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
# Twilio's SIDs: two letters naming the resource, then 32 lowercase hex digits.
CALL_SID = re.compile(r"CA[0-9a-f]{32}")
STREAM_SID = re.compile(r"MZ[0-9a-f]{32}")
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
DTMF_DIGITS = frozenset(entry.value for entry in KeypadEntry)


class TwilioProtocolError(AdmissionRefused):
    """The peer did not open the stream the way Twilio does."""

    def __init__(self, detail: str, reason: str = "handshake") -> None:
        super().__init__(reason, detail)


@dataclass
class StreamStart:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    opening: list[str] = field(default_factory=list, repr=False)  # the messages up to `start`, as sent (for a relay)


async def read_stream_start(websocket: WebSocket, timeout_s: float = 10.0) -> StreamStart:
    """Read `connected` (optional, once) then `start`; a clear TwilioProtocolError for anything else."""
    opening: list[str] = []
    async with asyncio.timeout(timeout_s):
        for _ in range(2):
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise TwilioProtocolError("the socket closed before the stream started")
            text = message.get("text")
            if text is None:
                raise TwilioProtocolError("a binary frame before the stream started")
            event = _parse(text)
            if event is None:
                raise TwilioProtocolError(f"a malformed message before the stream started: {text[:60]!r}")
            opening.append(text)
            if event.get("event") != "connected":
                start = parse_start(event)
                start.opening = opening
                return start
        raise TwilioProtocolError("no 'start' after 'connected'")


def parse_start(event: dict[str, Any]) -> StreamStart:
    """The `start` message's stream, checked against Twilio's formats (SIDs, media format, parameters)."""
    if event.get("event") != "start":
        raise TwilioProtocolError(f"expected 'start', got {str(event.get('event'))[:30]!r}")
    start = event.get("start")
    if not isinstance(start, dict):
        raise TwilioProtocolError("'start' without a start object")
    media_format = start.get("mediaFormat")
    if not isinstance(media_format, dict) or {k: media_format.get(k) for k in MEDIA_FORMAT} != MEDIA_FORMAT:
        raise TwilioProtocolError(f"unsupported media format {str(media_format)[:80]}; expected {MEDIA_FORMAT}")
    sids = {name: start.get(name) for name in ("streamSid", "callSid", "accountSid")}
    for (name, value), pattern in zip(sids.items(), (STREAM_SID, CALL_SID, ACCOUNT_SID), strict=True):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise TwilioProtocolError(f"'start' with a malformed {name}: {str(value)[:40]!r}", reason="sid_format")
    parameters = start.get("customParameters") or {}
    if not isinstance(parameters, dict) or not all(isinstance(v, str) for v in parameters.values()):
        raise TwilioProtocolError("'start' with customParameters that are not strings")
    return StreamStart(
        stream_sid=sids["streamSid"], call_sid=sids["callSid"], account_sid=sids["accountSid"],
        custom_parameters=parameters,
    )  # fmt: skip


def _parse(text: str) -> dict[str, Any] | None:
    if len(text) > MAX_MESSAGE_CHARS:
        return None
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None
    return event if isinstance(event, dict) else None


class TwilioMediaStreamSerializer(TwilioFrameSerializer):
    """pipecat's Twilio serializer (mu-law, `clear` on barge-in, REST hang-up) made tolerant of bad input, with
    `mark` echoes and `stop` handed to callbacks."""

    def __init__(
        self,
        start: StreamStart,
        *,
        on_mark: Callable[[str], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
        account_sid: str = "",
        auth_token: str = "",
        rest_base_url: str | None = None,
    ) -> None:
        hang_up = bool(account_sid and auth_token)
        super().__init__(
            stream_sid=start.stream_sid,
            call_sid=start.call_sid,
            account_sid=account_sid or None,
            auth_token=auth_token or None,
            base_url=rest_base_url,
            params=TwilioFrameSerializer.InputParams(auto_hang_up=hang_up),
        )
        self._on_mark = on_mark
        self._on_stop = on_stop

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            logger.warning(f"twilio: dropped a binary frame of {len(data)} bytes (Media Streams is JSON text)")
            return None
        event = _parse(data)
        if event is None:
            logger.warning(f"twilio: dropped a malformed or oversized message ({len(data)} chars): {data[:60]!r}")
            return None
        kind = event.get("event")
        body = event.get(kind) if isinstance(kind, str) else None
        if kind in ("media", "dtmf", "mark") and not isinstance(body, dict):
            logger.warning(f"twilio: dropped a {kind!r} message whose {kind!r} field is not an object")
            return None
        if kind == "media":
            payload = body.get("payload")
            try:
                if not isinstance(payload, str) or len(base64.b64decode(payload, validate=True)) == 0:
                    raise ValueError("empty payload")
            except (binascii.Error, ValueError) as e:
                logger.warning(f"twilio: dropped a media message with a bad payload ({e})")
                return None
            return await super().deserialize(data)
        if kind == "dtmf":
            digit = body.get("digit")
            if not isinstance(digit, str) or digit not in DTMF_DIGITS:
                logger.warning(f"twilio: dropped a dtmf message with digit {str(digit)[:10]!r}")
                return None
            return await super().deserialize(data)
        if kind == "mark":
            name = body.get("name")
            if isinstance(name, str):
                await self._on_mark(name)
            return None
        if kind == "stop":
            await self._on_stop()
            return None
        logger.warning(f"twilio: ignored an unexpected {str(kind)[:30]!r} message")
        return None


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def connect_stream_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in parameters.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(stream_url)}>{params}</Stream></Connect></Response>"
    )


def reject_twiml(reason: str = "busy") -> str:
    """Decline the call before it is answered: the caller hears a busy tone (or "rejected") and is not billed."""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason={quoteattr(reason)}/></Response>'


def twilio_signature(auth_token: str, url: str, params: Mapping[str, Any] | None = None) -> str:
    """Twilio's request signature of `url` and POST `params` (as Twilio computes it: what a test client sends)."""
    return RequestValidator(auth_token).compute_signature(url, params or {})


def signature_valid(auth_token: str, url: str, params: Mapping[str, Any] | None, signature: str | None) -> bool:
    """Whether `signature` is Twilio's for `url` (with or without its default port) and `params` (a mapping; one
    with `getlist`, such as Starlette's FormData, has repeated keys checked as Twilio signs them)."""
    return bool(signature) and RequestValidator(auth_token).validate(url, params or {}, signature)
