"""Twilio Media Streams, as Twilio speaks it: the `connected`/`start` handshake, `media` (base64 mu-law 8 kHz,
20 ms), `dtmf`, `mark`, `stop` from Twilio; `media`, `mark` and `clear` back. Plus the webhook side:
`X-Twilio-Signature` (computed and checked by the `twilio` package's RequestValidator); the TwiML is `markup.py`'s.

Anything malformed is logged and dropped (`stream_messages.py`): a bad message never ends the call, let alone the
server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pipecat.serializers.twilio import TwilioFrameSerializer
from twilio.request_validator import RequestValidator

from agent.telephony.gate import StreamOpening
from agent.telephony.stream_messages import CheckedStreamMessages, StreamProtocolError

MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
# Twilio's SIDs: two letters naming the resource, then 32 lowercase hex digits.
CALL_SID = re.compile(r"CA[0-9a-f]{32}")
STREAM_SID = re.compile(r"MZ[0-9a-f]{32}")
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")


class TwilioProtocolError(StreamProtocolError):
    """The peer did not open the stream the way Twilio does."""


def parse_start(event: dict[str, Any]) -> StreamOpening:
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
    return StreamOpening(
        carrier="twilio", call_id=sids["callSid"], stream_id=sids["streamSid"], account_id=sids["accountSid"],
        parameters=parameters,
    )  # fmt: skip


class TwilioMediaStreamSerializer(CheckedStreamMessages, TwilioFrameSerializer):
    """pipecat's Twilio serializer (mu-law, `clear` on barge-in) behind the checks every stream gets, with `mark`
    echoes and `stop` handed to callbacks. The call is hung up (or put through) by `twilio_rest.py`, not here."""

    carrier = "twilio"
    parse_start = staticmethod(parse_start)

    def __init__(
        self,
        opening: StreamOpening,
        *,
        on_mark: Callable[[str], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(
            stream_sid=opening.stream_id,
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
            on_mark=on_mark,
            on_stop=on_stop,
        )


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def twilio_signature(auth_token: str, url: str, params: Mapping[str, Any] | None = None) -> str:
    """Twilio's request signature of `url` and POST `params` (as Twilio computes it: what a test client sends)."""
    return RequestValidator(auth_token).compute_signature(url, params or {})


def signature_valid(auth_token: str, url: str, params: Mapping[str, Any] | None, signature: str | None) -> bool:
    """Whether `signature` is Twilio's for `url` (with or without its default port) and `params` (a mapping; one
    with `getlist`, such as Starlette's FormData, has repeated keys checked as Twilio signs them)."""
    return bool(signature) and RequestValidator(auth_token).validate(url, params or {}, signature)
