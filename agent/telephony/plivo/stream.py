"""Plivo audio streaming, as Plivo speaks it (`<Stream bidirectional="true">`): `start` (the call's `callId`,
`streamId`, `accountId`, its `mediaFormat`, and the `extra_headers` our answer XML gave it), then `media` (base64
mu-law 8 kHz), `dtmf`, `playedStream` (a checkpoint reached: the audio before it has played) and `clearedAudio`;
`playAudio`, `checkpoint` and `clearAudio` back. Plivo sends no `stop`: the socket closing ends the stream.

Plus the webhook side: Plivo signs each request with `X-Plivo-Signature-V3` (HMAC-SHA256 under the auth token, of
the URL with its query sorted, the POST parameters sorted and concatenated, and `X-Plivo-Signature-V3-Nonce`).
`extraHeaders` takes letters and digits only, so the stream token travels hex-encoded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipecat.serializers.plivo import PlivoFrameSerializer

from agent.telephony.gate import TOKEN_PARAMETER, StreamOpening
from agent.telephony.stream_messages import CheckedStreamMessages, StreamProtocolError

PLIVO_RATE = 8000
CONTENT_TYPE = "audio/x-mulaw;rate=8000"
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": PLIVO_RATE}
CALL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
AUTH_ID = re.compile(r"(MA|SA)[A-Z0-9]{18}")
EXTRA_HEADER_VALUE = re.compile(r"[A-Za-z0-9]{1,256}")
SIGNATURE_HEADER = "x-plivo-signature-v3"
NONCE_HEADER = "x-plivo-signature-v3-nonce"


class PlivoProtocolError(StreamProtocolError):
    """The peer did not open the stream the way Plivo does."""


def extra_headers(parameters: Mapping[str, str]) -> str:
    """`parameters` as an extraHeaders value ("a=1,b=2"; the stream token hex-encoded: letters and digits only)."""
    return ",".join(f"{k}={v.encode().hex() if k == TOKEN_PARAMETER else v}" for k, v in parameters.items())


def parse_extra_headers(text: Any) -> dict[str, str]:
    """`extra_headers` ("a=1,b=2", or ";"-separated) as a dict, the stream token decoded; malformed pairs skipped."""
    if not isinstance(text, str) or len(text) > 1024:
        return {}
    headers: dict[str, str] = {}
    for pair in re.split(r"[,;]", text):
        name, _, value = pair.strip().partition("=")
        if not (EXTRA_HEADER_VALUE.fullmatch(name) and EXTRA_HEADER_VALUE.fullmatch(value)):
            continue
        if name == TOKEN_PARAMETER:
            try:
                value = bytes.fromhex(value).decode()
            except (ValueError, UnicodeDecodeError):
                continue
        headers[name] = value
    return headers


def parse_start(event: dict[str, Any]) -> StreamOpening:
    """The `start` message's stream, checked against Plivo's formats (ids, media format)."""
    start = event.get("start")
    if event.get("event") != "start" or not isinstance(start, dict):
        raise PlivoProtocolError(f"expected 'start', got {str(event.get('event'))[:30]!r}")
    media = start.get("mediaFormat")
    if not isinstance(media, dict) or {k: media.get(k) for k in MEDIA_FORMAT} != MEDIA_FORMAT:
        raise PlivoProtocolError(f"unsupported media format {str(media)[:80]}; expected {MEDIA_FORMAT}")
    ids = {name: start.get(name) for name in ("callId", "streamId", "accountId")}
    for (name, value), pattern in zip(ids.items(), (CALL_UUID, CALL_UUID, AUTH_ID), strict=True):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise PlivoProtocolError(f"'start' with a malformed {name}: {str(value)[:40]!r}", reason="sid_format")
    return StreamOpening(
        carrier="plivo", call_id=ids["callId"], stream_id=ids["streamId"], account_id=ids["accountId"],
        parameters=parse_extra_headers(event.get("extra_headers")),
    )  # fmt: skip


class PlivoMediaStreamSerializer(CheckedStreamMessages, PlivoFrameSerializer):
    """pipecat's Plivo serializer (`playAudio`, `clearAudio` on barge-in) behind the checks every stream gets, with
    `playedStream` (a checkpoint's echo) handed to a callback. The call is hung up (or put through) by
    `plivo_rest.py`, not here."""

    carrier = "plivo"
    parse_start = staticmethod(parse_start)
    sends_connected = False
    mark_event = "playedStream"
    stop_event = None

    def __init__(self, opening: StreamOpening, *, on_mark, on_stop) -> None:
        super().__init__(
            stream_id=opening.stream_id,
            params=PlivoFrameSerializer.InputParams(auto_hang_up=False),
            on_mark=on_mark,
            on_stop=on_stop,
        )

    def mark_name(self, event: dict[str, Any]) -> Any:
        return event.get("name")

    def unexpected(self, kind: Any, event: dict[str, Any]) -> None:
        if kind != "clearedAudio":  # Plivo's confirmation of a clearAudio: nothing to do
            super().unexpected(kind, event)


def checkpoint_message(stream_id: str, name: str) -> str:
    return json.dumps({"event": "checkpoint", "streamId": stream_id, "name": name})


def signature_v3(auth_token: str, url: str, params: Mapping[str, str | list[str]], nonce: str) -> str:
    """Plivo's V3 signature of a POST to `url` with `params` (as Plivo computes it: what a test client sends)."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = {k: sorted(v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    sorted_query = "&".join("&".join(f"{k}={v}" for v in query[k]) for k in sorted(query))
    if sorted_query or params:
        base += f"?{sorted_query}"
    if sorted_query and params:
        base += "."
    body = "".join("".join(f"{k}{v}" for v in sorted(_values(params[k]))) for k in sorted(params))
    mac = hmac.new(auth_token.encode(), f"{base}{body}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def signature_valid(auth_token: str, url: str, params: Mapping[str, str | list[str]], nonce: str | None,
                    signature: str | None) -> bool:  # fmt: skip
    """Whether `signature` (the header may list several, comma-separated) is Plivo's for this request."""
    if not (nonce and signature):
        return False
    expected = signature_v3(auth_token, url, params, nonce)
    return any(hmac.compare_digest(expected, candidate.strip()) for candidate in signature.split(","))


def _values(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]
