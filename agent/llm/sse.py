"""Server-sent events: turn a streamed HTTP body into the `data:` payloads of its events."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def iter_sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Yield the data of each event (multi-line data joined with newlines), skipping comments.

    Stops at the OpenAI-style terminator `data: [DONE]`.
    """
    data: list[str] = []
    async for line in lines:
        line = line.rstrip("\r")
        if not line:
            if data:
                payload = "\n".join(data)
                data = []
                if payload == "[DONE]":
                    return
                yield payload
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        payload = "\n".join(data)
        if payload != "[DONE]":
            yield payload
