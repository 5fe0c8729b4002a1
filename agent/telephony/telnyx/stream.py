"""Telnyx media streaming, as Telnyx speaks it (the TeXML `<Connect><Stream bidirectionalMode="rtp">` flavour):
`connected`, then `start` (`stream_id`; the call's `call_control_id`, the account's `user_id`, the
`custom_parameters` our TeXML gave it and its `media_format`), then `media` (base64 RTP payloads, 20 ms of PCMU or
PCMA at 8 kHz), `dtmf`, `mark` echoes, `error` and `stop`; `media`, `mark` and `clear` back. Telnyx returns each
mark once the audio before it has played, and at once for marks a `clear` dropped.

Plus the webhook side: TeXML webhooks are form-encoded and signed with the account's ed25519 key over
`<telnyx-timestamp>|<raw body>` (headers `telnyx-signature-ed25519`, `telnyx-timestamp`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from loguru import logger
from pipecat.serializers.telnyx import TelnyxFrameSerializer

from agent.telephony.gate import StreamOpening
from agent.telephony.stream_messages import CheckedStreamMessages, StreamProtocolError

TELNYX_RATE = 8000
# The stream's media_format.encoding as Telnyx documents it, newer and older ("audio/x-mulaw" in the older streaming
# example), and the codec it names.
ENCODINGS = {"PCMU": "PCMU", "PCMA": "PCMA", "audio/x-mulaw": "PCMU"}
# Telnyx's ids: a call control id ("v3:" and URL-safe base64; the bare UUID of the older TeXML examples is a call
# id too), UUIDs for streams and accounts.
CALL_CONTROL_ID = re.compile(r"v[0-9]:[A-Za-z0-9_-]{16,200}")
UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
CALL_ID = re.compile(f"{CALL_CONTROL_ID.pattern}|{UUID.pattern}")
SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"


class TelnyxProtocolError(StreamProtocolError):
    """The peer did not open the stream the way Telnyx does."""


def parse_start(event: dict[str, Any]) -> StreamOpening:
    """The `start` message's stream, checked against Telnyx's formats (ids, media format, parameters)."""
    start = event.get("start")
    if event.get("event") != "start" or not isinstance(start, dict):
        raise TelnyxProtocolError(f"expected 'start', got {str(event.get('event'))[:30]!r}")
    media = start.get("media_format")
    named = media.get("encoding") if isinstance(media, dict) else None
    encoding = ENCODINGS.get(named) if isinstance(named, str) else None  # a list or an object names nothing
    if encoding is None or not isinstance(media, dict) or media.get("sample_rate") != TELNYX_RATE:
        raise TelnyxProtocolError(f"unsupported media format {str(media)[:80]}; expected PCMU or PCMA at 8000 Hz")
    ids = {"stream_id": event.get("stream_id"), "call_control_id": start.get("call_control_id")}
    ids["user_id"] = start.get("user_id")
    for (name, value), pattern in zip(ids.items(), (UUID, CALL_ID, UUID), strict=True):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise TelnyxProtocolError(f"'start' with a malformed {name}: {str(value)[:40]!r}", reason="sid_format")
    parameters = start.get("custom_parameters") or {}
    if not isinstance(parameters, dict) or not all(isinstance(v, str) for v in parameters.values()):
        raise TelnyxProtocolError("'start' with custom_parameters that are not strings")
    return StreamOpening(
        carrier="telnyx", call_id=ids["call_control_id"], stream_id=ids["stream_id"], account_id=ids["user_id"],
        encoding=encoding, parameters=parameters,
    )  # fmt: skip


class TelnyxMediaStreamSerializer(CheckedStreamMessages, TelnyxFrameSerializer):
    """pipecat's Telnyx serializer (PCMU or PCMA both ways, `clear` on barge-in) behind the checks every stream
    gets, with `mark` echoes and `stop` handed to callbacks and `error` frames logged. The call is hung up (or put
    through) by `telnyx_rest.py`, not here."""

    carrier = "telnyx"
    parse_start = staticmethod(parse_start)

    def __init__(self, opening: StreamOpening, *, on_mark, on_stop) -> None:
        super().__init__(
            stream_id=opening.stream_id,
            outbound_encoding=opening.encoding,  # pipecat's names: what Telnyx sends us ...
            inbound_encoding=opening.encoding,  # ... and what we send Telnyx
            params=TelnyxFrameSerializer.InputParams(auto_hang_up=False),
            on_mark=on_mark,
            on_stop=on_stop,
        )

    def unexpected(self, kind: Any, event: dict[str, Any]) -> None:
        if kind == "error":
            logger.warning(f"telnyx: the stream reported an error: {str(event.get('payload'))[:200]}")
        else:
            super().unexpected(kind, event)


def mark_message(name: str) -> str:
    return json.dumps({"event": "mark", "mark": {"name": name}})


def signature_valid(public_key: str, timestamp: str | None, body: bytes, signature: str | None, now: float,
                    tolerance_s: float) -> bool:  # fmt: skip
    """Whether `signature` is the account's ed25519 signature of `timestamp|body`, signed within `tolerance_s`."""
    if not (timestamp and signature and timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(signature, validate=True), f"{timestamp}|".encode() + body)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def sign(private_key: Ed25519PrivateKey, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers Telnyx sends with a webhook body (what a test client signs with its own key pair)."""
    signature = private_key.sign(f"{timestamp}|".encode() + body)
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: str(timestamp)}
