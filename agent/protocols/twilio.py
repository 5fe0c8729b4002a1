"""Twilio Media Streams, as Twilio speaks it: the `connected`/`start` handshake, `media` (base64 mu-law 8 kHz,
20 ms), `dtmf`, `mark`, `stop` from Twilio; `media`, `mark` and `clear` back. Plus the webhook side: TwiML and
`X-Twilio-Signature` validation.

Anything malformed (not JSON, a binary frame, an oversized or unknown message, bad base64) is logged and dropped:
a bad message never ends the call, let alone the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import Frame
from pipecat.serializers.twilio import TwilioFrameSerializer

TWILIO_RATE = 8000
MAX_MESSAGE_CHARS = 64 * 1024
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


class TwilioProtocolError(Exception):
    """The peer did not open the stream the way Twilio does."""


@dataclass
class StreamStart:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)


async def read_stream_start(websocket: WebSocket, timeout_s: float = 10.0) -> StreamStart:
    """Read `connected` (optional) then `start`; a clear TwilioProtocolError for anything else."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise TwilioProtocolError("the socket closed before the stream started")
            text = message.get("text")
            if text is None:
                raise TwilioProtocolError("a binary frame before the stream started")
            event = _parse(text)
            if event is None:
                raise TwilioProtocolError(f"a malformed message before the stream started: {text[:60]!r}")
            if event.get("event") == "connected":
                continue
            if event.get("event") != "start":
                raise TwilioProtocolError(f"expected 'start', got {event.get('event')!r}")
            start = event.get("start") or {}
            media_format = start.get("mediaFormat") or {}
            if {k: media_format.get(k) for k in MEDIA_FORMAT} != MEDIA_FORMAT:
                raise TwilioProtocolError(f"unsupported media format {media_format!r}; expected {MEDIA_FORMAT}")
            stream_sid = start.get("streamSid") or event.get("streamSid")
            if not stream_sid or not start.get("callSid"):
                raise TwilioProtocolError("'start' without streamSid or callSid")
            return StreamStart(
                stream_sid=stream_sid,
                call_sid=start["callSid"],
                account_sid=start.get("accountSid", ""),
                custom_parameters=dict(start.get("customParameters") or {}),
            )


def _parse(text: str) -> dict[str, Any] | None:
    if len(text) > MAX_MESSAGE_CHARS:
        return None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
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
        if kind == "media":
            payload = (event.get("media") or {}).get("payload")
            try:
                if not isinstance(payload, str) or len(base64.b64decode(payload, validate=True)) == 0:
                    raise ValueError("empty payload")
            except (binascii.Error, ValueError) as e:
                logger.warning(f"twilio: dropped a media message with a bad payload ({e})")
                return None
            return await super().deserialize(data)
        if kind == "dtmf":
            return await super().deserialize(data)
        if kind == "mark":
            name = (event.get("mark") or {}).get("name")
            if isinstance(name, str):
                await self._on_mark(name)
            return None
        if kind == "stop":
            await self._on_stop()
            return None
        logger.warning(f"twilio: ignored an unexpected {kind!r} message")
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


def twilio_signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    """Twilio's request signature: HMAC-SHA1 over the full URL followed by each POST field name+value, sorted."""
    payload = url + "".join(f"{k}{form[k]}" for k in sorted(form))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_valid(auth_token: str, url: str, form: Mapping[str, str], signature: str | None) -> bool:
    return bool(signature) and hmac.compare_digest(twilio_signature(auth_token, url, form), signature or "")
