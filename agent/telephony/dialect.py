"""What a simulated carrier must know of its own protocol to place a call on our server (see `__init__.py`)."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ElementTree
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from agent.telephony import g711

MAX_ANSWER_BYTES = 64 * 1024
FRAME_S = 0.02
RATE = 8000


@dataclass(frozen=True)
class CallIds:
    """The carrier's ids for one call, in its formats."""

    call_id: str
    stream_id: str
    account_id: str


@dataclass
class StreamInvite:
    """What the answer document tells the carrier: where the stream goes, and what it must carry."""

    url: str
    parameters: dict[str, str] = field(default_factory=dict)


class CallRejected(RuntimeError):
    """The answer document rejected the call (a full or draining server: busy); the caller hears a busy tone."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the server rejected the call: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Incoming:
    """One message from our server, as the carrier reads it."""

    kind: Literal["media", "mark", "clear", "other"]
    audio: bytes = b""  # 16-bit PCM at 8 kHz, for media
    name: str = ""  # for a mark (or checkpoint)


class Dialect(ABC):
    """One carrier's side of the bridge."""

    carrier: str
    encoding: str = "PCMU"
    rejection: str = "Reject"  # the verb of an answer that declines the call (`reason="busy"`)

    @abstractmethod
    def new_ids(self) -> CallIds: ...

    @abstractmethod
    def webhook_form(self, ids: CallIds, direction: str) -> dict[str, str]:
        """The call webhook's form fields."""

    @abstractmethod
    def signature_headers(self, url: str, form: dict[str, str], body: bytes) -> dict[str, str]:
        """The headers that sign a form POST to `url` (empty when the carrier has no credential here)."""

    def upgrade_headers(self, url: str) -> dict[str, str]:
        """The headers of the stream's websocket upgrade (Twilio signs it)."""
        return {}

    @abstractmethod
    def read_answer(self, root: ElementTree.Element) -> StreamInvite:
        """The stream the answer document connects the call to."""

    @abstractmethod
    def opening(self, ids: CallIds, invite: StreamInvite) -> list[str]:
        """The messages that open the stream (`connected`, `start`)."""

    @abstractmethod
    def media(self, ids: CallIds, audio: bytes, index: int) -> str:
        """One 20 ms chunk of the caller's audio (already encoded)."""

    @abstractmethod
    def dtmf(self, ids: CallIds, digit: str) -> str: ...

    @abstractmethod
    def mark_echo(self, ids: CallIds, name: str) -> str:
        """The message saying that the audio before mark `name` has played."""

    def stop(self, ids: CallIds) -> str | None:
        return None

    def clear_echo(self, ids: CallIds) -> str | None:
        """What the carrier answers to a clear, if anything."""
        return None

    def marks_survive_clear(self) -> bool:
        """Whether the marks a clear dropped are echoed at once (Twilio, Telnyx) or never (Plivo)."""
        return True

    def read(self, message: dict[str, Any]) -> Incoming:
        """One of our messages, as the carrier reads it (Twilio's and Telnyx's `media`, `mark` and `clear`; Plivo
        names them otherwise)."""
        kind = message.get("event")
        if kind == "media":
            return Incoming("media", audio=self.decode(base64.b64decode(message["media"]["payload"])))
        if kind == "mark":
            return Incoming("mark", name=message["mark"]["name"])
        return Incoming("clear" if kind == "clear" else "other")

    # -- shared ----------------------------------------------------------------------------------
    def encode(self, pcm: bytes) -> bytes:
        return g711.encode(pcm, self.encoding)

    def decode(self, audio: bytes) -> bytes:
        return g711.decode(audio, self.encoding)

    @property
    def silence(self) -> bytes:
        return self.encode(bytes(int(RATE * FRAME_S) * 2))

    async def post(self, url: str, form: dict[str, str]) -> httpx.Response:
        """POST `form` to `url` as the carrier does, signed."""
        body = urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        headers |= self.signature_headers(url, form, body)
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, content=body, headers=headers)

    async def invite(self, webhook_url: str, ids: CallIds, direction: str = "inbound") -> StreamInvite:
        """Post the call webhook and read the stream out of the answer; CallRejected when it declines the call."""
        response = await self.post(webhook_url, self.webhook_form(ids, direction))
        if response.status_code != 200 or len(response.content) > MAX_ANSWER_BYTES:
            raise RuntimeError(f"the webhook {webhook_url} answered {response.status_code}: {response.text[:120]}")
        root = ElementTree.fromstring(response.content)
        if (rejection := root.find(f"./{self.rejection}")) is not None:
            raise CallRejected(rejection.get("reason", "rejected"))
        return self.read_answer(root)


def connected_stream(root: ElementTree.Element) -> tuple[str, dict[str, str]]:
    """The URL and `<Parameter>`s of a TwiML/TeXML `<Connect><Stream>`."""
    stream = root.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise RuntimeError(f"the webhook answered without a <Connect><Stream>: {ElementTree.tostring(root)[:200]!r}")
    return stream.get("url", ""), {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
