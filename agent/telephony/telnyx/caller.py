"""Telnyx's side: the TeXML webhook (form-encoded, signed with an ed25519 key over `timestamp|body` when given
one: the tests hold the pair, the server the public half), TeXML's `<Connect><Stream bidirectionalMode="rtp">`,
and the media streaming messages (`connected`, `start` with `custom_parameters` and `media_format`, `media` in the
stream's codec, `dtmf`, `mark` echoes, `stop`)."""

from __future__ import annotations

import base64
import json
import time
import uuid
import xml.etree.ElementTree as ElementTree

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.telephony.dialect import CallIds, Dialect, StreamInvite, connected_stream
from agent.telephony.telnyx import stream as telnyx

TEST_ACCOUNT_ID = "3e6f995f-85f7-4705-9741-53b116d28237"


class TelnyxCaller(Dialect):
    carrier = "telnyx"

    def __init__(
        self, signing_key: Ed25519PrivateKey | None = None, account_id: str = "", older_forms: bool = False
    ) -> None:
        self._signing_key = signing_key
        self._account_id = account_id or TEST_ACCOUNT_ID
        self._older_forms = older_forms  # the older documented forms: a bare UUID call id, "audio/x-mulaw"
        self.encoding = "PCMU"

    def new_ids(self) -> CallIds:
        call_id = "v3:" + base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode().rstrip("=")
        if self._older_forms:
            call_id = str(uuid.uuid4())
        return CallIds(call_id, str(uuid.uuid4()).upper(), self._account_id)

    def webhook_form(self, ids: CallIds, direction: str) -> dict[str, str]:
        return {
            "AccountSid": ids.account_id,
            "CallSid": ids.call_id,
            "CallSidLegacy": ids.call_id,
            "CallStatus": "ringing" if direction == "inbound" else "in-progress",
            "ConnectionId": "1234567890",
            "Direction": "inbound" if direction == "inbound" else "outbound",
            "From": "+15550100000",
            "To": "+15550100001",
        }

    def signature_headers(self, url: str, form: dict[str, str], body: bytes) -> dict[str, str]:
        return telnyx.sign(self._signing_key, int(time.time()), body) if self._signing_key else {}

    def read_answer(self, root: ElementTree.Element) -> StreamInvite:
        url, parameters = connected_stream(root)
        stream = root.find("./Connect/Stream")
        if stream is None or stream.get("bidirectionalMode") != "rtp":
            raise RuntimeError('the TeXML stream is not bidirectional (bidirectionalMode="rtp")')
        self.encoding = stream.get("bidirectionalCodec", "PCMU")
        return StreamInvite(url, parameters)

    @property
    def _wire_encoding(self) -> str:
        return "audio/x-mulaw" if self._older_forms and self.encoding == "PCMU" else self.encoding

    def opening(self, ids: CallIds, invite: StreamInvite) -> list[str]:
        start = {
            "user_id": ids.account_id,
            "call_control_id": ids.call_id,
            "call_session_id": str(uuid.uuid4()),
            "from": "+15550100000",
            "to": "+15550100001",
            "client_state": None,
            "custom_parameters": invite.parameters,
            "media_format": {"encoding": self._wire_encoding, "sample_rate": 8000, "channels": 1},
        }
        return [
            json.dumps({"event": "connected", "version": "1.0.0"}),
            json.dumps({"event": "start", "sequence_number": "1", "stream_id": ids.stream_id, "start": start}),
        ]

    def media(self, ids: CallIds, audio: bytes, index: int) -> str:
        media = {"track": "inbound", "chunk": str(index + 1), "timestamp": str(index * 20)}
        media["payload"] = base64.b64encode(audio).decode()
        sequence = str(index + 2)
        return json.dumps({"event": "media", "sequence_number": sequence, "media": media, "stream_id": ids.stream_id})

    def dtmf(self, ids: CallIds, digit: str) -> str:
        return json.dumps({"event": "dtmf", "stream_id": ids.stream_id, "dtmf": {"digit": digit}})

    def mark_echo(self, ids: CallIds, name: str) -> str:
        return json.dumps({"event": "mark", "stream_id": ids.stream_id, "mark": {"name": name}})

    def stop(self, ids: CallIds) -> str | None:
        stop = {"user_id": ids.account_id, "call_control_id": ids.call_id}
        return json.dumps({"event": "stop", "stop": stop, "stream_id": ids.stream_id})
