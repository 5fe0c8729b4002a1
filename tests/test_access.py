"""Who may open the page's call socket and read /metrics, over real websockets and HTTP: ACCESS_TOKEN holders
when it is set, clients on this machine otherwise; and the page socket's input bounds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
import pytest
import websockets
from loguru import logger
from pydantic import SecretStr

from agent.server.access_log import LOGGERS, redacted
from agent.server.app import create_app
from agent.settings import SettingsError
from bench.audio import load
from bench.serving import serving
from tests.conftest import local_settings
from tests.memory import memory_growth
from tests.servers import send_in_real_time, send_until_cut, wait_for

TOKEN = "page-access-token-4d1f9a0c2b7e"
FORWARDED = {"X-Forwarded-For": "203.0.113.9"}  # what a tunnel or proxy on this machine adds


@pytest.fixture(scope="module")
async def token_server(local_runtime):
    async with serving(create_app(local_settings(access_token=SecretStr(TOKEN)), runtime=local_runtime)) as server:
        yield server


@pytest.fixture(scope="module")
async def local_server(local_runtime):
    async with serving(create_app(local_settings(), runtime=local_runtime)) as server:
        yield server


class Captured(logging.Handler):
    """Every record the server logs, formatted as it would be written."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_secret_in_a_query_string_never_reaches_the_log(local_runtime):
    """A client (or an attacker replaying a leaked URL) puts tokens in query strings: refused, and the request log
    keeps the path and the parameters' names, never their values."""
    secret = "operator-token-9f3c7d1e5a"
    captured = Captured()
    async with serving(create_app(local_settings(), runtime=local_runtime), logged=True) as server:
        for name in LOGGERS:
            logging.getLogger(name).addHandler(captured)
        try:
            async with httpx.AsyncClient() as client:
                refused = await client.post(f"{server.http}/calls?operator_token={secret}", json={})
                await client.get(f"{server.http}/metrics?token={secret}&x=1")
            with contextlib.suppress(Exception):
                async with websockets.connect(f"{server.ws}/ws?access_token={secret}", origin=server.http) as ws:
                    await asyncio.wait_for(ws.recv(), 5)
        finally:
            for name in LOGGERS:
                logging.getLogger(name).removeHandler(captured)
    assert refused.status_code >= 400, refused.status_code
    assert any("/calls?operator_token=<redacted>" in line for line in captured.lines), captured.lines
    assert any("/ws?access_token=<redacted>" in line for line in captured.lines), captured.lines
    assert not any(secret in line for line in captured.lines), captured.lines


def test_a_query_string_keeps_its_names_and_loses_its_values():
    assert redacted("/calls?operator_token=abc&to=%2B1555") == "/calls?operator_token=<redacted>&to=<redacted>"
    assert redacted("/ws") == "/ws" and redacted("/ws?") == "/ws?"
    assert redacted("/ws?operator-token-9f3c") == "/ws??=<redacted>"  # a bare value is a value too


async def refusal(server, **kwargs) -> tuple[int, str]:
    async with websockets.connect(f"{server.ws}/ws", origin=server.http, **kwargs) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code, ws.close_reason


async def metrics_status(server, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{server.http}/metrics", headers=headers)).status_code


async def test_with_an_access_token_the_socket_and_metrics_need_it(token_server):
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        assert await refusal(token_server) == (1008, "access token required")
        assert await refusal(token_server, subprotocols=["voice-agent", "access-token.wrong"]) == (
            1008,
            "access token required",
        )
        protocols = ["voice-agent", f"access-token.{TOKEN}"]
        async with websockets.connect(f"{token_server.ws}/ws", origin=token_server.http, subprotocols=protocols) as ws:
            assert ws.subprotocol == "voice-agent"  # the token is never echoed back
            assert '"type": "session"' in await ws.recv()
        assert await metrics_status(token_server, {}) == 401
        assert await metrics_status(token_server, {"Authorization": "Bearer wrong"}) == 401
        assert await metrics_status(token_server, {"Authorization": f"Bearer {TOKEN}"}) == 200
    finally:
        logger.remove(sink)
    assert lines and not any(TOKEN in line for line in lines)


async def test_without_an_access_token_only_this_machine_gets_in(local_server):
    code, reason = await refusal(local_server, additional_headers=FORWARDED)
    assert code == 1008 and "own machine only" in reason
    async with websockets.connect(f"{local_server.ws}/ws", origin=local_server.http) as ws:
        assert '"type": "session"' in await ws.recv()
    assert await metrics_status(local_server, FORWARDED) == 401
    assert await metrics_status(local_server, {}) == 200


async def test_an_oversize_page_frame_closes_the_socket(local_server):
    async with websockets.connect(f"{local_server.ws}/ws", origin=local_server.http) as ws:
        await ws.recv()  # session
        await ws.send(b"\x00" * (64 * 1024 + 2))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1009
    await wait_for(lambda: local_server.app.state.admission.active == 0)


@pytest.mark.slow
async def test_a_flooding_page_is_dropped_then_disconnected_with_bounded_memory(local_server):
    speech = load("ill_disposed.wav").tobytes()
    frames = [speech[i : i + 640].ljust(640, b"\x00") for i in range(0, len(speech), 640)]
    async with websockets.connect(f"{local_server.ws}/ws", origin=local_server.http) as ws:
        await ws.recv()  # session
        # The caller talks normally first (a question, then silence while it is answered): what the call itself
        # allocates (its pipeline, its first transcription and answer) is not the flood's doing.
        await send_in_real_time(ws, frames + [bytes(640)] * 150)
        started = time.monotonic()
        async with memory_growth() as growth:
            await send_until_cut(ws, frames)  # 10x real time
            await wait_for(lambda: local_server.app.state.admission.active == 0)
    assert ws.close_code == 1008 and ws.close_reason == "flood"
    assert time.monotonic() - started > 4.5  # dropped for 5 s before it was cut
    growth.check("page flood")


@pytest.mark.parametrize("value", ["short", "x" * 30 + " with spaces"])
def test_a_weak_access_token_stops_start_up_without_showing_it(value):
    with pytest.raises(SettingsError) as refused:
        local_settings(access_token=SecretStr(value))
    assert "ACCESS_TOKEN" in str(refused.value) and value not in str(refused.value)
