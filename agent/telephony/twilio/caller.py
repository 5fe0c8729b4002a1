"""Twilio's side: the call webhook signed with `X-Twilio-Signature` (when given the auth token), TwiML's
`<Connect><Stream>` and its `<Parameter>`s, and Media Streams messages (`connected`, `start`, `media`, `dtmf`,
`mark` echoes, `stop`)."""

from __future__ import annotations

import base64
import json
import uuid
import xml.etree.ElementTree as ElementTree

from agent.telephony.dialect import CallIds, Dialect, StreamInvite, connected_stream
from agent.telephony.twilio.stream import MEDIA_FORMAT, mark_message, twilio_signature

TEST_ACCOUNT_SID = "AC" + "0" * 32


class TwilioCaller(Dialect):
    carrier = "twilio"

    def __init__(self, auth_token: str = "", account_sid: str = "") -> None:
        self._auth_token = auth_token
        self._account_sid = account_sid or TEST_ACCOUNT_SID

    def new_ids(self) -> CallIds:
        return CallIds(f"CA{uuid.uuid4().hex}", f"MZ{uuid.uuid4().hex}", self._account_sid)

    def webhook_form(self, ids: CallIds, direction: str) -> dict[str, str]:
        return {
            "AccountSid": ids.account_id,
            "ApiVersion": "2010-04-01",
            "CallSid": ids.call_id,
            "CallStatus": "ringing" if direction == "inbound" else "in-progress",
            "Direction": "inbound" if direction == "inbound" else "outbound-api",
            "From": "+15550100000",
            "To": "+15550100001",
        }

    def signature_headers(self, url: str, form: dict[str, str], body: bytes) -> dict[str, str]:
        return {"X-Twilio-Signature": twilio_signature(self._auth_token, url, form)} if self._auth_token else {}

    def upgrade_headers(self, url: str) -> dict[str, str]:
        return self.signature_headers(url, {}, b"")

    def read_answer(self, root: ElementTree.Element) -> StreamInvite:
        return StreamInvite(*connected_stream(root))

    def opening(self, ids: CallIds, invite: StreamInvite) -> list[str]:
        start = {
            "accountSid": ids.account_id,
            "streamSid": ids.stream_id,
            "callSid": ids.call_id,
            "tracks": ["inbound"],
            "customParameters": invite.parameters,
            "mediaFormat": MEDIA_FORMAT,
        }
        return [
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": ids.stream_id, "start": start}),
        ]

    def media(self, ids: CallIds, audio: bytes, index: int) -> str:
        media = {
            "track": "inbound",
            "chunk": str(index + 1),
            "timestamp": str(index * 20),
            "payload": base64.b64encode(audio).decode(),
        }
        return json.dumps(
            {"event": "media", "sequenceNumber": str(index + 2), "streamSid": ids.stream_id, "media": media}
        )

    def dtmf(self, ids: CallIds, digit: str) -> str:
        body = {"track": "inbound_track", "digit": digit}
        return json.dumps({"event": "dtmf", "streamSid": ids.stream_id, "dtmf": body})

    def mark_echo(self, ids: CallIds, name: str) -> str:
        return mark_message(ids.stream_id, name)

    def stop(self, ids: CallIds) -> str | None:
        stop = {"accountSid": ids.account_id, "callSid": ids.call_id}
        return json.dumps({"event": "stop", "streamSid": ids.stream_id, "stop": stop})
