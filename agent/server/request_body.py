"""Reading an HTTP request's body with a bound, for every route a stranger can post to: a declared length over the
bound is refused before anything is read, and a body streamed without one stops being read once it passes it."""

from __future__ import annotations

from starlette.requests import Request


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
