"""Twilio Media Streams messages as Twilio sends them, for the tests and benchmarks that drive the stream
by hand."""

from __future__ import annotations

import base64
import json

from agent.telephony.twilio.stream import MEDIA_FORMAT

STREAM_SID = "MZ" + "5" * 32
CALL_SID = "CA" + "c" * 32
ACCOUNT_SID = "AC" + "a" * 32


def start_message(
    stream_sid: str = STREAM_SID,
    media_format: dict | None = None,
    call_sid: str = CALL_SID,
    account_sid: str = ACCOUNT_SID,
    parameters: dict | None = None,
) -> str:
    return json.dumps(
        {
            "event": "start",
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "callSid": call_sid,
                "accountSid": account_sid,
                "mediaFormat": media_format or MEDIA_FORMAT,
                "customParameters": parameters or {},
            },
        }
    )


def media_message(payload: bytes, stream_sid: str = STREAM_SID) -> str:
    return json.dumps(
        {"event": "media", "streamSid": stream_sid, "media": {"payload": base64.b64encode(payload).decode()}}
    )
