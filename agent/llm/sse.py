"""Server-sent events: turn a streamed HTTP body into the `data:` payloads of its events."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def iter_sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Yield the data of each event (multi-line data joined with newlines), skipping comments.

    After the OpenAI-style terminator `data: [DONE]` nothing more is yielded, but the body is still read to its
    end, so that the HTTP connection goes back to the pool for the next turn instead of being closed.
    """
    data: list[str] = []
    done = False
    async for line in lines:
        line = line.rstrip("\r")
        if done:
            continue
        if not line:
            payload = "\n".join(data)
            data = []
            if payload == "[DONE]":
                done = True
            elif payload:
                yield payload
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if not done and (payload := "\n".join(data)) and payload != "[DONE]":
        yield payload
