"""The demo page in a real headless Chromium (Debian's), its microphone fed from a recording of real speech."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import websockets
from playwright.async_api import async_playwright
from pydantic import SecretStr

from agent.server.app import create_app
from bench.audio import build_call, transcripts, word_error_rate
from bench.serving import serving
from tests.conftest import local_settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


def chromium_args(microphone: Path | None) -> list[str]:
    media = (
        [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
        ]
        if microphone
        else ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]
    )
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--autoplay-policy=no-user-gesture-required",
        *media,
    ]


async def open_page(playwright, tmp_path: Path, url: str, microphone: Path | None):
    context = await playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),  # a fresh profile every time
        executable_path=CHROMIUM,
        headless=True,
        args=chromium_args(microphone),
        viewport={"width": 1280, "height": 800},
    )
    page = context.pages[0] if context.pages else await context.new_page()
    await page.goto(url)
    return context, page


@pytest.mark.slow
async def test_talk_to_the_agent_from_the_page(local_runtime, tmp_path):
    microphone = build_call(tmp_path / "mic.wav", [1.0, "ill_disposed.wav", 12.0])
    app = create_app(local_settings(), runtime=local_runtime)
    async with serving(app) as server, async_playwright() as playwright:
        context, page = await open_page(playwright, tmp_path, f"{server.http}/", microphone)
        try:
            await page.click("#start")
            await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=15_000)
            assert "local" in await page.inner_text("#provider")
            await page.wait_for_function("window.voiceAgent.turns.length >= 1", timeout=30_000)
            await page.wait_for_function("window.voiceAgent.playoutReports >= 1", timeout=10_000)
            await page.wait_for_timeout(1500)  # let the answer play a little for the screenshot
            # The caller's words, however many bubbles the turn taking made of them.
            user = " ".join(await page.locator("#transcript .msg.user:not(.interim)").all_inner_texts())
            bot = await page.locator("#transcript .msg.bot").first.inner_text()
            assert word_error_rate(transcripts()["ill_disposed.wav"], user) <= 0.35, user
            assert bot.strip()
            assert await page.evaluate("window.voiceAgent.audioChunks") > 5  # the answer was played
            row = page.locator("#latency .turn[data-turn='1']")
            assert "ms" in await row.locator(".total").inner_text()
            verdict = await row.locator(".verdict").inner_text()
            assert "answer" in verdict and "budget" in verdict, verdict  # the answer is judged, not a filler
            assert "p50" in await page.inner_text("#stats")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser-demo.png"), full_page=True)
            await page.click("#start")  # Stop
            await page.wait_for_function("document.body.dataset.state === 'idle'", timeout=5_000)
        finally:
            await context.close()
        heard = [r for channel, event, r in app.state.recent_turns if channel == "browser" and event == "heard"]
        assert heard and heard[0]["heard_ms"] >= heard[0]["answer_ms"]  # the page reported the answer's playout


async def test_busy_server_says_so_on_the_page(local_runtime, tmp_path):
    microphone = build_call(tmp_path / "mic.wav", [1.0])
    app = create_app(local_settings(max_sessions=0), runtime=local_runtime)
    async with serving(app) as server, async_playwright() as playwright:
        context, page = await open_page(playwright, tmp_path, f"{server.http}/", microphone)
        try:
            await page.click("#start")
            await page.wait_for_function("document.body.dataset.state === 'busy'", timeout=10_000)
            assert "busy" in (await page.inner_text("#banner")).lower()
        finally:
            await context.close()


async def test_websocket_from_another_origin_is_refused(local_runtime):
    async with serving(create_app(local_settings(), runtime=local_runtime)) as server:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(f"{server.ws}/ws", origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(f"{server.ws}/ws", origin=server.http) as ws:
            assert '"type": "session"' in await ws.recv()


async def test_denied_microphone_is_explained(local_runtime, tmp_path):
    async with serving(create_app(local_settings(), runtime=local_runtime)) as server, async_playwright() as pw:
        context, page = await open_page(pw, tmp_path, f"{server.http}/", microphone=None)
        try:
            await page.click("#start")
            await page.wait_for_function("!document.getElementById('banner').hidden", timeout=10_000)
            assert "microphone" in (await page.inner_text("#banner")).lower()
        finally:
            await context.close()


async def test_dropped_socket_is_reported_and_retried(local_runtime, tmp_path):
    microphone = build_call(tmp_path / "mic.wav", [1.0])
    async with async_playwright() as pw:
        async with serving(create_app(local_settings(), runtime=local_runtime)) as server:
            context, page = await open_page(pw, tmp_path, f"{server.http}/", microphone)
            await page.click("#start")
            await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=15_000)
        try:  # the server is gone: the page says so and keeps trying
            await page.wait_for_function("document.body.dataset.state === 'reconnecting'", timeout=10_000)
            assert "reconnecting" in (await page.inner_text("#banner")).lower()
        finally:
            await context.close()


async def test_the_page_asks_for_the_access_token_or_takes_it_from_its_link(local_runtime, tmp_path):
    token = "page-access-token-in-the-browser-7f3a"
    microphone = build_call(tmp_path / "mic.wav", [1.0])
    app = create_app(local_settings(access_token=SecretStr(token)), runtime=local_runtime)
    async with serving(app) as server, async_playwright() as pw:
        context, page = await open_page(pw, tmp_path, f"{server.http}/", microphone)
        try:
            await page.click("#start")
            await page.wait_for_selector("#access:not([hidden])", timeout=10_000)
            assert "access token" in (await page.inner_text("#banner")).lower()
            await page.fill("#access-token", token)
            await page.click("#access button")
            await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=15_000)
            await page.click("#start")  # Stop

            linked = await context.new_page()  # a new tab: its own session storage
            await linked.goto(f"{server.http}/#token={token}")
            assert token not in linked.url  # taken from the link, then dropped from the address bar
            await linked.click("#start")
            await linked.wait_for_function("document.body.dataset.state === 'connected'", timeout=15_000)
            assert await linked.is_hidden("#access")
        finally:
            await context.close()
