"""What the tests do with a real server on 127.0.0.1 (started by `bench/serving.py`): send audio in real time,
flood it until it cuts the socket, wait for its state to change."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import websockets


async def _drain(ws) -> None:
    """Read and drop what the server sends (unread, it would hold back its close frame) until the socket closes."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async for _ in ws:
            pass


async def send_in_real_time(ws, frames: list) -> None:
    """Send 20 ms `frames` one every 20 ms, as a caller talks, reading what the server sends meanwhile."""
    reader = asyncio.create_task(_drain(ws))
    for frame in frames:
        await ws.send(frame)
        await asyncio.sleep(0.02)
    reader.cancel()


async def send_until_cut(ws, messages: list, per_tick: int = 10) -> None:
    """Send `messages` round and round, `per_tick` of them every 20 ms (10 = ten 20 ms frames: 10x real time),
    until the server closes the socket; fails if it never does. What the server sends is read meanwhile."""
    reader = asyncio.create_task(_drain(ws))
    try:
        with pytest.raises(websockets.ConnectionClosed):
            for i in range(100_000):
                await ws.send(messages[i % len(messages)])
                if i % per_tick == 0:
                    await asyncio.sleep(0.02)
            pytest.fail("the server never cut the flood")
    finally:
        await reader


async def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def wait_until(condition, timeout_s: float = 10.0, interval_s: float = 0.2) -> None:
    """Like `wait_for`, for an async condition (one that asks a server)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)
