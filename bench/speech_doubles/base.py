"""What every speech double shares: a websocket server on 127.0.0.1 that checks each handshake against the
provider's documentation, records what clients sent, and injects the faults a hosted provider has in production.

A provider double subclasses `WebsocketDouble` with `check(request)` (the handshake: path, query, auth) and
`session(socket)` (the conversation), and sends every reply through `reply()`, where the faults apply. A request's
first reply waits for `pace(since)`: with `Faults.latency_s` set, it leaves no earlier than that long after the
request came, the local model's own time counting in it (the provider's published speed, not that plus ours).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass
class Faults:
    """What goes wrong, counted in replies sent on a connection (None: never)."""

    refuse_key: bool = False  # every handshake gets a 401, even with the right key (a key revoked mid-call)
    stall_after: int | None = None  # from this reply on, say nothing more (the socket stays open)
    close_after: int | None = None  # after this many replies, close the socket (code 1011)
    malformed_after: int | None = None  # after this many replies, send one message that is not JSON
    latency_s: float = 0.0  # a request's first reply is due this long after it came (the provider's published speed)


class Refused(Exception):
    """A handshake the provider would refuse, with the HTTP status and the reason it gives."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Handshake:
    """One accepted or refused handshake as the double saw it (headers without the key)."""

    path: str
    query: dict[str, str]
    refused: str | None = None


@dataclass
class Connection:
    """One client connection: the messages it sent and the replies it was given."""

    socket: ServerConnection
    received: list[Any] = field(default_factory=list)  # parsed JSON messages; audio as its byte count
    replies: int = 0


class Jobs:
    """A connection's replies, made in order by one worker (a slow one holds the later ones back, as on a socket)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()

    def put(self, job: Callable[[], Awaitable[None]]) -> None:
        self._queue.put_nowait(job)

    async def join(self) -> None:
        await self._queue.join()

    async def work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await job()
            except ConnectionClosed:
                return
            finally:
                self._queue.task_done()


Backend = TypeVar("Backend")


class WebsocketDouble(Generic[Backend]):
    """A provider's websocket API on 127.0.0.1, answering with a local model (`backend`); `async with
    double.running():` serves it."""

    def __init__(self, key: str, backend: Backend, faults: Faults | None = None) -> None:
        self.key = key
        self.backend = backend
        self.faults = faults or Faults()
        self.handshakes: list[Handshake] = []
        self.connections: list[Connection] = []
        self.violations: list[str] = []  # what clients sent that the protocol does not allow
        self.port = 0

    @property
    def origin(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[WebsocketDouble]:
        async with serve(self._serve, "127.0.0.1", 0, process_request=self._handshake, max_size=2**22) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield self

    def check(self, path: str, query: dict[str, str], headers: Headers) -> None:
        """Raise `Refused` for a handshake the provider refuses."""
        raise NotImplementedError

    async def session(self, connection: Connection) -> None:
        """Speak the provider's protocol on an accepted connection."""
        raise NotImplementedError

    def check_key(self, presented: str | None) -> None:
        if self.faults.refuse_key or presented != self.key:
            raise Refused(HTTPStatus.UNAUTHORIZED, "invalid credentials")

    async def violation(self, connection: Connection, what: str) -> None:
        """The client broke the protocol: record it and close the socket as the provider does (1008)."""
        self.violations.append(what)
        await connection.socket.close(1008, what[:120])

    async def pace(self, since: float) -> None:
        """Hold a request's first reply until `Faults.latency_s` after the request came (`since`, the event loop's
        time): the time the local model took counts in it; a reply already later than that goes at once."""
        if (left := since + self.faults.latency_s - asyncio.get_running_loop().time()) > 0:
            await asyncio.sleep(left)

    async def reply(self, connection: Connection, message: dict[str, Any]) -> bool:
        """Send one JSON reply unless a fault says otherwise; False once the connection is stalled or closed."""
        faults, n = self.faults, connection.replies
        if faults.stall_after is not None and n >= faults.stall_after:
            return False
        if faults.close_after is not None and n >= faults.close_after:
            await connection.socket.close(1011, "internal error")
            return False
        connection.replies += 1
        if faults.malformed_after is not None and n == faults.malformed_after:
            await connection.socket.send('{"type": "Results", "channel": ')
            return True
        await connection.socket.send(json.dumps(message))
        return True

    def _handshake(self, socket: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query: dict[str, str] = {}
        try:
            for name, values in parse_qs(url.query, keep_blank_values=True, strict_parsing=bool(url.query)).items():
                if len(values) > 1:
                    raise Refused(HTTPStatus.BAD_REQUEST, f"query parameter {name} given twice")
                query[name] = values[0]
            self.check(url.path, query, request.headers)
        except Refused as e:
            self.handshakes.append(Handshake(url.path, query, refused=str(e)))
            return socket.respond(e.status, f"{e}\n")
        except ValueError as e:
            self.handshakes.append(Handshake(url.path, query, refused=str(e)))
            return socket.respond(HTTPStatus.BAD_REQUEST, "malformed query\n")
        self.handshakes.append(Handshake(url.path, query))
        return None

    async def _serve(self, socket: ServerConnection) -> None:
        connection = Connection(socket)
        self.connections.append(connection)
        await self.session(connection)
