"""Handing a caller's websocket from the front to a worker (`agent/server/handoff.py`, `handed_socket.py`): a real
uvicorn server on 127.0.0.1 with the front's protocol, a real `websockets` client sending while the connection is
handed over, and the worker's end on the other side of a real Unix socket pair (`SCM_RIGHTS`). Nothing the caller
sent is lost or repeated, whatever was in flight; the worker's close reaches the caller; a front that ends the call
itself (its worker died) sends the close frame."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
import websockets
from starlette.websockets import WebSocket
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from agent.server.handed_socket import HandedSocket
from agent.server.handoff import (
    HANDOFF,
    MAX_WEBSOCKET_MESSAGE_BYTES,
    Handoff,
    HandoffWebSocketProtocol,
    _complete_messages,
    receive_handoff,
    send_handoff,
)
from bench.server_process import free_port

MESSAGES = 400


def client_frames(messages: list[str | bytes], fragment: int | None = None) -> bytes:
    """The bytes a websocket client puts on the wire for `messages` (masked; `fragment`: split each in frames)."""
    client = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN)
    for message in messages:
        data = message.encode() if isinstance(message, str) else message
        if fragment:
            parts = [data[i : i + fragment] for i in range(0, len(data), fragment)]
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if i == 0:
                    (client.send_text if isinstance(message, str) else client.send_binary)(part, fin=last)
                else:
                    client.send_continuation(part, fin=last)
                if i == 0:
                    client.send_ping(b"between fragments")
        else:
            (client.send_text if isinstance(message, str) else client.send_binary)(data)
    return b"".join(client.data_to_send())


def messages_in(wire: bytes) -> list[str | bytes]:
    server = ServerProtocol(state=State.OPEN, max_size=None)
    server.receive_data(wire)
    out: list[str | bytes] = []
    parts: list[bytes] = []
    text = False
    for frame in server.events_received():
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            text, parts = frame.opcode is Opcode.TEXT, [frame.data]
        elif frame.opcode is Opcode.CONT:
            parts.append(frame.data)
        else:
            continue
        if frame.fin:
            out.append(b"".join(parts).decode() if text else b"".join(parts))
    return out


@pytest.mark.parametrize("fragment", [None, 7])
def test_the_front_keeps_exactly_the_bytes_of_the_unfinished_message(fragment):
    """Cut the wire anywhere: the whole messages before the boundary plus the messages parsed from the kept bytes
    and what follows are the messages sent, each once, in order (short, 16-bit and 64-bit lengths; fragmented
    messages with a ping between their frames)."""
    sent: list[str | bytes] = ["start", b"\x01" * 125, "x" * 126, b"\x02" * (70_000 if not fragment else 300), "stop"]
    wire = client_frames(sent, fragment)
    middle = range(500, len(wire) - 500, 997)  # every byte near the small messages, a sample through the large one
    for cut in sorted({*range(min(500, len(wire))), *middle, *range(max(0, len(wire) - 500), len(wire) + 1)}):
        read = bytearray(wire[:cut])
        boundary = _complete_messages(read)
        assert messages_in(wire[:boundary]) + messages_in(wire[boundary:]) == sent, cut


@contextlib.asynccontextmanager
async def front_and_worker(handle) -> AsyncIterator[str]:
    """A front (uvicorn, the handoff protocol) whose route reads the first message, detaches the connection and
    hands it over a Unix socket pair to `handle(handoff, sock)`, the worker's side, run in the same loop."""
    front_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker_end.setblocking(False)
    detached_sockets = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        first = await websocket.receive_text()
        detached = scope["extensions"][HANDOFF]()
        assert detached is not None
        detached_sockets.append(detached)
        handoff = Handoff.of("/echo", "", scope.get("client"), [first, *detached.messages], detached.unread)
        send_handoff(front_end, handoff, detached.fileno())
        await asyncio.sleep(3600)  # the front waits for the call to end

    async def worker() -> None:
        while True:
            handoff, sock = await receive_handoff(worker_end)
            asyncio.create_task(handle(handoff, sock, detached_sockets[-1]))

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=HandoffWebSocketProtocol, ws_max_size=MAX_WEBSOCKET_MESSAGE_BYTES,
        ws_per_message_deflate=False, lifespan="off", log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    receiving = asyncio.create_task(worker())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}/stream"
    finally:
        receiving.cancel()
        server.should_exit = server.force_exit = True
        await asyncio.wait({serving}, timeout=5)
        front_end.close()
        worker_end.close()


async def echo_then_close(handoff, sock, _detached) -> None:
    """The worker: echo every message, and close with 1000 "done" after the last ("stop")."""
    handed = await HandedSocket.open(sock, handoff.asgi_messages(), handoff.unread_bytes(), 1 << 20)
    websocket = WebSocket({"type": "websocket", "path": handoff.path, "headers": []}, handed.receive, handed.send)
    try:
        await websocket.accept()
        while (text := await websocket.receive_text()) != "stop":
            await websocket.send_text(text)
        await websocket.close(code=1000, reason="done")
    finally:
        await handed.finish()


async def test_every_message_in_flight_reaches_the_worker_once_and_in_order():
    """The client sends its messages without waiting: many are in the front's hands (queued, or a frame begun)
    when it hands the connection over. The worker echoes each one exactly once, in order, then closes."""
    async with front_and_worker(echo_then_close) as url:
        async with websockets.connect(url, compression=None) as ws:
            sent = [f"message {i} " + "x" * (i % 300) for i in range(MESSAGES)]
            for text in sent:
                await ws.send(text)
            await ws.send("stop")
            echoed = [m async for m in ws]
        assert echoed == sent  # the first, which the front read, went with the handoff (as a phone opening does)
        assert ws.close_code == 1000 and ws.close_reason == "done"


async def test_a_caller_closing_ends_the_call_in_the_worker():
    opened, ended = asyncio.Event(), asyncio.Event()

    async def until_closed(handoff, sock, _detached) -> None:
        handed = await HandedSocket.open(sock, handoff.asgi_messages(), handoff.unread_bytes(), 1 << 20)
        opened.set()
        websocket = WebSocket({"type": "websocket", "path": "/", "headers": []}, handed.receive, handed.send)
        await websocket.accept()
        with contextlib.suppress(Exception):
            while True:
                await websocket.receive_text()
        await handed.finish()
        ended.set()

    async with front_and_worker(until_closed) as url:
        async with websockets.connect(url, compression=None) as ws:
            await ws.send("hello")
            await asyncio.wait_for(opened.wait(), 5)
            await ws.send("hung up next")
        await asyncio.wait_for(ended.wait(), 5)
        assert ws.close_code == 1000


async def test_the_front_closes_the_call_when_its_worker_cannot():
    """The worker took the socket and died without a word: the front's own copy sends 1011."""

    async def die(handoff, sock, detached) -> None:
        sock.close()  # the worker's copy gone, as when its process is killed
        detached.close(1011)

    async with front_and_worker(die) as url:
        async with websockets.connect(url, compression=None) as ws:
            await ws.send("hello")
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(5):
                    async for _ in ws:
                        pass
        assert ws.close_code == 1011


async def test_a_worker_rejects_a_handoff_without_one_socket():
    front_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker_end.setblocking(False)
    with front_end, worker_end:
        front_end.sendall(Handoff("/ws").encode())
        with pytest.raises(ValueError, match="one socket"):
            await receive_handoff(worker_end)
        front_end.close()
        with pytest.raises(EOFError):
            await receive_handoff(worker_end)
