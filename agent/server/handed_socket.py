"""A caller's websocket as the worker receives it from the front (`handoff.py`): an open connection, handshake done,
served as an ASGI websocket so that the call's code (Starlette's `WebSocket`, pipecat's FastAPI transport) runs on
it unchanged.

The frames are parsed by `websockets`' sans-I/O protocol, started in the OPEN state; the messages the front had
read but not used come first, then the bytes of the frame it had begun, then the socket. Pings are answered; a
close from the caller is answered and ends the call; the call's own close waits (up to `CLOSE_TIMEOUT_S`) for the
caller's reply before the socket is shut down. Reading pauses while `MAX_QUEUED` messages wait for the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

CLOSE_TIMEOUT_S = 5.0
MAX_QUEUED = 16

ASGIMessage = dict[str, Any]


class HandedSocket(asyncio.Protocol):
    """The worker's end of a handed-over websocket: `receive` and `send` are its ASGI callables."""

    def __init__(self, messages: list[ASGIMessage], unread: bytes, max_size: int | None) -> None:
        self.conn = ServerProtocol(state=State.OPEN, max_size=max_size)
        self._unread = unread
        self._queue: asyncio.Queue[ASGIMessage] = asyncio.Queue()
        for message in [{"type": "websocket.connect"}, *messages]:
            self._queue.put_nowait(message)
        self._fragments: list[bytes] = []
        self._text = False
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self._closed = asyncio.Event()  # the connection is gone
        self._close_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if self._unread:  # before the socket is read: the frame the front had begun comes first
            self.data_received(self._unread)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._handle_events()

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        self._handle_events()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        code = self.conn.close_rcvd.code if self.conn.close_rcvd else 1006
        self._queue.put_nowait({"type": "websocket.disconnect", "code": code})
        self._writable.set()
        self._closed.set()
        if self._close_timer is not None:
            self._close_timer.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- ASGI ------------------------------------------------------------------------------------
    async def receive(self) -> ASGIMessage:
        message = await self._queue.get()
        if self._reading_paused and self._queue.qsize() < MAX_QUEUED // 2 and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return message

    async def send(self, message: ASGIMessage) -> None:
        await self._writable.wait()
        kind = message["type"]
        if kind == "websocket.accept":
            return  # the front accepted it
        if self._closed.is_set() or self.conn.state is not State.OPEN:
            raise ConnectionResetError("the caller's websocket is closed")
        if kind == "websocket.send":
            if message.get("bytes") is not None:
                self.conn.send_binary(message["bytes"])
            else:
                self.conn.send_text(message["text"].encode())
            self._flush()
        elif kind == "websocket.close":
            self.conn.send_close(message.get("code") or 1000, message.get("reason") or "")
            self._flush()
            self._queue.put_nowait({"type": "websocket.disconnect", "code": message.get("code") or 1000})
            assert self._transport is not None
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._transport.abort)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on a websocket")

    @classmethod
    async def open(cls, sock: Any, messages: list[ASGIMessage], unread: bytes, max_size: int | None) -> HandedSocket:
        """Serve the handed-over `sock`: `messages` (ASGI receive events) come first, then `unread`'s frames."""
        handed = cls(messages, unread, max_size)
        await asyncio.get_running_loop().connect_accepted_socket(lambda: handed, sock)
        return handed

    async def finish(self) -> None:
        """After the call: close the websocket if the call did not, and wait until the connection is gone."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if self.conn.state is State.OPEN:
                self.conn.send_close(1000)
                self._flush()
            if self._close_timer is None:
                self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, transport.abort)
        await self._closed.wait()

    # -- frames ----------------------------------------------------------------------------------
    def _handle_events(self) -> None:
        for event in self.conn.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        self._flush()  # pongs and the reply to a close
        if self.conn.close_expected() and self._transport is not None:
            # FIN now: the front still holds a copy of the socket, which alone would keep the connection open
            if self._transport.can_write_eof():
                self._transport.write_eof()
            self._transport.close()
        elif self.conn.parser_exc is not None and self._transport is not None:
            self._transport.close()

    def _frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._text = frame.opcode is Opcode.TEXT
            self._fragments = [frame.data]
        elif frame.opcode is Opcode.CONT:
            self._fragments.append(frame.data)
        else:
            return  # ping, pong and close: the protocol answers them
        if not frame.fin:
            return
        data = b"".join(self._fragments)
        self._fragments = []
        if self._text:
            try:
                self._queue.put_nowait({"type": "websocket.receive", "text": data.decode()})
            except UnicodeDecodeError:
                self.conn.fail(1007, "invalid UTF-8")
                return
        else:
            self._queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if self._queue.qsize() >= MAX_QUEUED and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(data))
