"""Handing a caller's websocket from the front to a worker: the accepted connection itself, not a copy of its bytes.

The front terminates the caller's websocket (handshake, origin, access token, signature, stream token, admission),
reads what it must (a phone stream's opening messages), then detaches the connection from its own event loop and
passes the socket to the worker over a Unix socket (`SCM_RIGHTS`). From then on the caller's frames go straight to
the worker and the front never touches them: before, the front parsed every 20 ms frame and sent it again over a
second websocket (README, "CPU per call").

What the front had read but not used goes with the socket: the messages it queued but the call has not consumed,
and the bytes of a frame it had begun to read (`HandoffWebSocketProtocol` counts frame boundaries in what it reads,
so the worker starts exactly where the front stopped). The front keeps its own copy of the socket, unread, until
the worker says the call is over: a worker that dies mid-call leaves the caller a close frame (1011) from the front,
not a silent line.

The message on the Unix socket: 4 bytes of length, then JSON (`Handoff`), with the socket's descriptor attached.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

MAX_WEBSOCKET_MESSAGE_BYTES = 64 * 1024  # a caller's largest message, in the front and, after the handoff, the worker
HANDOFF = "voice_agent.handoff"  # the ASGI scope extension holding the connection's `detach`
MAX_HANDOFF_BYTES = 4 * 1024 * 1024  # a handoff's JSON: the opening, a few queued messages, a frame's start
_LENGTH = 4


def handoff_path(worker_socket: str) -> str:
    """Where a worker serving on `worker_socket` takes handed-over calls."""
    return worker_socket + ".handoff"


@dataclass
class Handoff:
    """What the worker needs to go on with the call: where it was headed, and what the front had read of it."""

    path: str  # the worker's route: "/ws" or "/phone/<carrier>"
    query: str = ""
    client: tuple[str, int] | None = None
    messages: list[dict[str, str]] = field(default_factory=list)  # {"text": ...} or {"bytes": base64}, in order
    unread: str = ""  # base64: the start of a frame the front had read part of

    @classmethod
    def of(
        cls, path: str, query: str, client: tuple[str, int] | None, messages: Sequence[str | bytes], unread: bytes
    ) -> Handoff:
        """The handoff of a call headed for `path`, with the messages and the frame's start the front had read."""
        encoded = [{"bytes": base64.b64encode(m).decode()} if isinstance(m, bytes) else {"text": m} for m in messages]
        return cls(path, query, client, encoded, base64.b64encode(unread).decode())

    def asgi_messages(self) -> list[dict[str, Any]]:
        return [
            {"type": "websocket.receive", "bytes": base64.b64decode(m["bytes"])}
            if "bytes" in m
            else {"type": "websocket.receive", "text": m["text"]}
            for m in self.messages
        ]

    def unread_bytes(self) -> bytes:
        return base64.b64decode(self.unread)

    def encode(self) -> bytes:
        body = json.dumps(asdict(self)).encode()
        return len(body).to_bytes(_LENGTH, "big") + body

    @classmethod
    def decode(cls, body: bytes) -> Handoff:
        values = json.loads(body)
        client = values.pop("client", None)
        return cls(**values, client=tuple(client) if client else None)


def send_handoff(channel: socket.socket, handoff: Handoff, fd: int) -> None:
    """Send `handoff` with the descriptor `fd` attached (a small write on a local socket: it does not block)."""
    data = handoff.encode()
    sent = socket.send_fds(channel, [data], [fd])
    if sent < len(data):
        channel.sendall(data[sent:])


async def receive_handoff(channel: socket.socket) -> tuple[Handoff, socket.socket]:
    """The next handoff on the (non-blocking) `channel`, and the socket it carried. EOFError: the front has gone."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, fds, _flags, _address = socket.recv_fds(channel, 65536, 1)
            break
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_reader(channel.fileno(), ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_reader(channel.fileno())
    if not data:
        raise EOFError("the front closed the handoff channel")
    if len(fds) != 1:
        for fd in fds:
            socket.close(fd)
        raise ValueError(f"a handoff carries one socket, not {len(fds)}")
    sock = socket.socket(fileno=fds[0])
    try:
        length = int.from_bytes(data[:_LENGTH], "big")
        if length > MAX_HANDOFF_BYTES:
            raise ValueError(f"a handoff of {length} bytes")
        while len(data) < _LENGTH + length:
            more = await loop.sock_recv(channel, _LENGTH + length - len(data))
            if not more:
                raise EOFError("the front closed the handoff channel mid-message")
            data += more
        return Handoff.decode(data[_LENGTH : _LENGTH + length]), sock
    except BaseException:
        sock.close()
        raise


class DetachedSocket:
    """The front's side of a connection handed to a worker: its copy of the socket, left unread, closed once the
    call is over (`release`), or with a close frame when the worker could not end the call itself (`close`)."""

    def __init__(self, protocol: HandoffWebSocketProtocol, messages: list[str | bytes], unread: bytes) -> None:
        self._protocol = protocol
        self.messages = messages
        self.unread = unread
        self.server_stopping = asyncio.Event()  # uvicorn is shutting down (after the drain): the call is cut

    def fileno(self) -> int:
        return self._protocol.transport.get_extra_info("socket").fileno()

    def release(self) -> None:
        """The worker has ended the call (its close frame sent): close the front's copy without a word."""
        self._protocol.transport.close()

    def close(self, code: int, reason: str = "") -> None:
        """End the call from the front: a close frame, then the front's copy closed."""
        protocol = self._protocol
        if not protocol.transport.is_closing() and protocol.conn.state is State.OPEN:
            protocol.conn.send_close(code, reason)
            protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        protocol.transport.close()


class HandoffWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol (sans-I/O `websockets`), whose connections can be detached for a worker: the
    scope's `voice_agent.handoff` extension is `detach()`. Until then it keeps the bytes of the frame it is reading
    (everything before that frame has been parsed into messages), which costs a header's arithmetic per frame."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request = bytearray()  # the HTTP upgrade request, until its end is seen
        self._frame = bytearray()  # after the handshake: the bytes since the last complete message
        self._upgraded = False
        self._detached: DetachedSocket | None = None

    def data_received(self, data: bytes) -> None:
        if not self._upgraded:
            self._request += data
            end = self._request.find(b"\r\n\r\n")
            if end >= 0:
                self._upgraded = True
                self._frame += self._request[end + 4 :]
                self._request = bytearray()
        else:
            self._frame += data
        super().data_received(data)
        del self._frame[: _complete_messages(self._frame)]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if hasattr(self, "scope"):
            self.scope["extensions"][HANDOFF] = self.detach

    def detach(self) -> DetachedSocket | None:
        """Stop reading this connection and give up the bytes read but not used; None when it cannot be handed
        over (a compressed or encrypted stream, or one that is closing: the call is then ended)."""
        if (
            self.conn.state is not State.OPEN
            or self.conn.extensions
            or self.scheme != "ws"
            or self.close_sent
            or self.transport.is_closing()
            or self.transport.get_extra_info("socket") is None
        ):
            return None
        self.transport.pause_reading()
        self.read_paused = False  # so that nothing in uvicorn resumes reading it: the bytes are the worker's now
        self.stop_keepalive()
        messages: list[str | bytes] = []
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event["type"] == "websocket.receive":
                messages.append(event["text"] if event.get("text") is not None else event["bytes"])
        self._detached = DetachedSocket(self, messages, bytes(self._frame))
        return self._detached

    def shutdown(self) -> None:
        if self._detached is None:
            super().shutdown()
        else:  # the worker holds the call: the front only stops waiting for it
            self._detached.server_stopping.set()


def _complete_messages(buffer: bytearray) -> int:
    """How many leading bytes of `buffer` (a client's websocket frames, from a message boundary on) are whole
    messages: up to the last frame that ends a message or is a control frame outside a fragmented one."""
    position = end = 0
    fragmented = False
    while len(buffer) - position >= 2:
        first, second = buffer[position], buffer[position + 1]
        length, header = second & 0x7F, 2
        if length == 126:
            if len(buffer) - position < 4:
                break
            length, header = int.from_bytes(buffer[position + 2 : position + 4], "big"), 4
        elif length == 127:
            if len(buffer) - position < 10:
                break
            length, header = int.from_bytes(buffer[position + 2 : position + 10], "big"), 10
        if second & 0x80:
            header += 4
        if len(buffer) - position < header + length:
            break
        position += header + length
        if first & 0x0F < 8:  # a data frame or a continuation: the message goes on unless FIN is set
            fragmented = not first & 0x80
        if not fragmented:
            end = position
    return end
