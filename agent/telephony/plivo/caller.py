"""Plivo's side: the answer-URL webhook signed with `X-Plivo-Signature-V3` and its nonce (when given the auth
token), the answer XML's `<Stream bidirectional="true">` and its `extraHeaders`, and the audio streaming messages
(`start`, `media`, `dtmf`; `playedStream` once the audio before a `checkpoint` has played, `clearedAudio` after a
`clearAudio`). Plivo sends no `stop`: it closes the socket."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
import xml.etree.ElementTree as ElementTree
from typing import Any

from agent.telephony.dialect import CallIds, Dialect, Incoming, StreamInvite
from agent.telephony.plivo import stream as plivo

TEST_AUTH_ID = "MA" + "A1B2C3D4E5F6G7H8J9"


class PlivoCaller(Dialect):
    carrier = "plivo"
    rejection = "Hangup"

    def __init__(self, auth_token: str = "", auth_id: str = "") -> None:
        self._auth_token = auth_token
        self._auth_id = auth_id or TEST_AUTH_ID
        self._sequence = 0
        self._extra_headers = ""  # the stream's, as sent in start (and, as Plivo does, in each media message)

    def new_ids(self) -> CallIds:
        return CallIds(str(uuid.uuid4()), str(uuid.uuid4()), self._auth_id)

    def webhook_form(self, ids: CallIds, direction: str) -> dict[str, str]:
        return {
            "CallUUID": ids.call_id,
            "CallStatus": "ringing" if direction == "inbound" else "in-progress",
            "Direction": direction,
            "Event": "StartApp",
            "From": "15550100000",
            "To": "15550100001",
            "RequestUUID": ids.call_id,
        }

    def signature_headers(self, url: str, form: dict[str, str], body: bytes) -> dict[str, str]:
        if not self._auth_token:
            return {}
        nonce = str(secrets.randbelow(10**20))
        return {"X-Plivo-Signature-V3": plivo.signature_v3(self._auth_token, url, form, nonce),
                "X-Plivo-Signature-V3-Nonce": nonce}  # fmt: skip

    def read_answer(self, root: ElementTree.Element) -> StreamInvite:
        stream = root.find("./Stream")
        if stream is None or not (stream.text or "").strip():
            raise RuntimeError(f"the answer URL gave no <Stream>: {ElementTree.tostring(root)[:200]!r}")
        if stream.get("bidirectional") != "true" or stream.get("contentType") != plivo.CONTENT_TYPE:
            raise RuntimeError("the <Stream> is not bidirectional mu-law 8 kHz")
        return StreamInvite((stream.text or "").strip(), plivo.parse_extra_headers(stream.get("extraHeaders", "")))

    def _message(self, event: str, ids: CallIds, **body: Any) -> str:
        self._sequence += 1
        return json.dumps({"event": event, "sequenceNumber": self._sequence, "streamId": ids.stream_id, **body})

    def opening(self, ids: CallIds, invite: StreamInvite) -> list[str]:
        start = {
            "callId": ids.call_id,
            "streamId": ids.stream_id,
            "accountId": ids.account_id,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        }
        self._sequence = 1
        self._extra_headers = plivo.extra_headers(invite.parameters)
        return [
            json.dumps({"event": "start", "sequenceNumber": 1, "start": start, "extra_headers": self._extra_headers})
        ]

    def media(self, ids: CallIds, audio: bytes, index: int) -> str:
        media = {"track": "inbound", "timestamp": str(int(time.time() * 1000)), "chunk": index + 1}
        media["payload"] = base64.b64encode(audio).decode()
        return self._message("media", ids, media=media, extra_headers=self._extra_headers)

    def dtmf(self, ids: CallIds, digit: str) -> str:
        return self._message("dtmf", ids, dtmf={"track": "inbound", "digit": digit})

    def mark_echo(self, ids: CallIds, name: str) -> str:
        return self._message("playedStream", ids, name=name)

    def clear_echo(self, ids: CallIds) -> str | None:
        return self._message("clearedAudio", ids)

    def marks_survive_clear(self) -> bool:
        return False

    def read(self, message: dict[str, Any]) -> Incoming:
        kind = message.get("event")
        if kind == "playAudio":
            media = message["media"]
            if media.get("contentType") != "audio/x-mulaw" or media.get("sampleRate") != 8000:
                raise RuntimeError(f"playAudio in an unexpected format: {media.get('contentType')}")
            return Incoming("media", audio=self.decode(base64.b64decode(media["payload"])))
        if kind == "checkpoint":
            return Incoming("mark", name=message["name"])
        return Incoming("clear" if kind == "clearAudio" else "other")
