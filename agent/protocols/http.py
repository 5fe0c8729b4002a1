"""HTTP helpers below both the server and the carriers: who the peer is (this machine, unforwarded?) and reading a
request's body with a bound, for every route a stranger can post to: a declared length over the bound is refused
before anything is read, and a body streamed without one stops being read once it passes it."""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection, Request

FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "cf-connecting-ip", "true-client-ip")


def is_loopback_host(host: str) -> bool:
    """Whether a listen address or host name is this machine only (0.0.0.0 and :: are every interface)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_local_client(connection: HTTPConnection) -> bool:
    """Whether the peer is on this machine and no proxy forwarded the request for someone else."""
    client = connection.client
    if client is None or not is_loopback_host(client.host):
        return False
    return not any(name in connection.headers for name in FORWARDING_HEADERS)


async def bounded_body(request: Request, max_bytes: int) -> bytes | None:
    """The body, or None when it is (or says it is) larger than `max_bytes`."""
    length = request.headers.get("content-length", "")
    if length and not (length.isascii() and length.isdigit() and int(length) <= max_bytes):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)
