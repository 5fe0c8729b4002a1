"""The phone bridge as an attacker meets it: a server in signed mode (TWILIO_AUTH_TOKEN, TWILIO_ACCOUNT_SID, a
local double of Twilio's REST API for the hang-up), real websockets, real uvicorn with `serve`'s frame limit.

Only a stream whose upgrade Twilio signed and whose `start` brings back the token the webhook gave that call gets
a pipeline; every refusal closes with 1008 before one exists, is counted in /metrics, and never reaches the REST
hang-up. Input bounds (frame size, pace, silence) hold on an admitted call, and memory stays bounded under each
abuse.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
import xml.etree.ElementTree as ElementTree
from urllib.parse import urlencode

import httpx
import pytest
import websockets
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.llm.simulator import ProviderSim
from agent.phone_client import place_call, to_phone_audio
from agent.server.app import create_app
from agent.settings import SettingsError
from agent.telephony.tokens import StreamTokens
from agent.telephony.twilio.stream import twilio_signature
from bench.audio import build_call, load
from bench.serving import serving
from bench.twilio_wire import ACCOUNT_SID, STREAM_SID, media_message, start_message
from tests.conftest import local_settings, sim_settings
from tests.memory import memory_growth
from tests.phone_deployment import simulated_runtime
from tests.servers import send_in_real_time, send_until_cut, wait_for

AUTH_TOKEN = "twilio-auth-token-of-the-test-account"
TOKEN_SECRET = "stream-token-secret-0123456789abcdef"


class Deployment:
    """A signed-mode server and the Twilio REST double its hang-ups go to."""

    def __init__(self, server, hangups: list[str]) -> None:
        self.server = server
        self.hangups = hangups

    @property
    def stream_url(self) -> str:
        """The stream path the answers name: this instance's (a token is bound to it)."""
        return f"{self.server.ws}/twilio/stream/{INSTANCE}"

    @property
    def webhook_url(self) -> str:
        return f"{self.server.http}/twilio/voice"

    async def invite(self, call_sid: str, **extra: str) -> dict[str, str]:
        """Post the incoming-call webhook as Twilio does; the `<Stream>` parameters of the TwiML."""
        answer = await self.post_webhook(call_sid, **extra)
        assert answer.status_code == 200, answer.text
        stream = ElementTree.fromstring(answer.text).find("./Connect/Stream")
        return {p.get("name"): p.get("value") for p in stream.findall("Parameter")}

    async def post_webhook(self, call_sid: str, **extra: str) -> httpx.Response:
        form = {"CallSid": call_sid, "AccountSid": ACCOUNT_SID, "From": "+15550100000", "To": "+15550100001"}
        form |= extra
        signature = twilio_signature(AUTH_TOKEN, self.webhook_url, form)
        async with httpx.AsyncClient() as client:
            return await client.post(self.webhook_url, data=form, headers={"X-Twilio-Signature": signature})

    def signed(self, url: str | None = None) -> dict[str, str]:
        return {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url or self.stream_url)}

    async def refused_count(self, reason: str) -> float:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{self.server.http}/metrics")).text
        line = f'voice_agent_refused_total{{channel="phone",reason="{reason}"}} '
        return next((float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)), 0.0)


@pytest.fixture(scope="module")
async def deployment(speech):
    """A signed Twilio deployment; the LLM is the provider simulator (the gates are under test, not the answers)."""
    hangups: list[str] = []

    async def call_resource(request: Request) -> JSONResponse:
        hangups.append(request.path_params["sid"])
        return JSONResponse({"sid": request.path_params["sid"], "status": "completed"})

    route = Route("/2010-04-01/Accounts/{account}/Calls/{sid}.json", call_resource, methods=["POST"])
    sim = ProviderSim(first_token_s=0.05, answer="Sure. That is easy.")
    async with serving(Starlette(routes=[route])) as twilio_rest, simulated_runtime(speech, sim) as runtime:
        settings = sim_settings(
            sim,
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=SecretStr(AUTH_TOKEN),
            twilio_api_base_url=twilio_rest.http,
            stream_token_secret=SecretStr(TOKEN_SECRET),
            stream_token_ttl_seconds=20,
        )
        async with serving(create_app(settings, runtime=runtime)) as server:
            yield Deployment(server, hangups)


def new_call_sid() -> str:
    return f"CA{uuid.uuid4().hex}"


INSTANCE = local_settings().instance


def minted(call_sid: str, *, age_s: float = 0.0) -> str:
    """A token minted with the server's secret (as another worker would), `age_s` in the past."""
    tokens = StreamTokens(TOKEN_SECRET.encode(), 20, clock=lambda: time.time() - age_s)
    return tokens.issue(call_sid, carrier="twilio", instance=INSTANCE)


async def closed_after_start(url: str, headers: dict[str, str], start: str) -> websockets.ConnectionClosed:
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(start)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    return closed.value


@pytest.mark.parametrize("signature", ["none", "forged", "other_url"])
async def test_an_unsigned_or_badly_signed_upgrade_is_refused(deployment, signature):
    headers = {
        "none": {},
        "forged": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        "other_url": deployment.signed("wss://elsewhere.example/twilio/stream"),
    }[signature]
    before = await deployment.refused_count("signature")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(deployment.stream_url, additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403  # closed (1008) before the upgrade completed
    assert await deployment.refused_count("signature") == before + 1


def forged_starts() -> dict[str, tuple[str, str]]:
    """Streams with a valid signature but a `start` that is not the admitted call's: (start message, reason)."""
    call = new_call_sid()
    return {
        "no token": (start_message(call_sid=call), "token_missing"),
        "garbage token": (start_message(call_sid=call, parameters={"streamToken": "123.abc"}), "token_invalid"),
        "token of another call": (
            start_message(call_sid=call, parameters={"streamToken": minted(new_call_sid())}),
            "token_invalid",
        ),
        "expired token": (
            start_message(call_sid=call, parameters={"streamToken": minted(call, age_s=60)}),
            "token_expired",
        ),
        "call sid with a path": (
            start_message(call_sid="../../Calls/CA" + "1" * 32, parameters={"streamToken": minted(call)}),
            "sid_format",
        ),
        "stream sid format": (start_message(stream_sid="MZtest", call_sid=call), "sid_format"),
        "account sid format": (start_message(account_sid="ACtest", call_sid=call), "sid_format"),
        "another account": (
            start_message(account_sid="AC" + "b" * 32, call_sid=call, parameters={"streamToken": minted(call)}),
            "account",
        ),
    }


@pytest.mark.parametrize("case", list(forged_starts()))
async def test_a_signed_stream_without_the_calls_token_is_refused_before_any_pipeline(deployment, case):
    start, reason = forged_starts()[case]
    app = deployment.server.app
    before = await deployment.refused_count(reason)
    deployment.hangups.clear()
    closed = await closed_after_start(deployment.stream_url, deployment.signed(), start)
    assert closed.rcvd.code == 1008
    assert app.state.admission.active == 0  # no session was claimed, so no pipeline was built
    assert await deployment.refused_count(reason) == before + 1
    await asyncio.sleep(0.5)
    assert deployment.hangups == []  # the REST hang-up never runs for a refused stream


@pytest.mark.slow
async def test_a_signed_call_with_its_token_is_answered(deployment, tmp_path):
    deployment.hangups.clear()
    app = deployment.server.app
    app.state.recent_turns.clear()
    call = build_call(tmp_path / "call.wav", [0.4, "ten_of_clubs.wav", 2.0])
    result = await place_call(call, deployment.webhook_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID)
    assert result.turns[0]["first_sound_ms"] is not None, result.turns  # the agent answered, as heard
    await wait_for(lambda: deployment.server.app.state.admission.active == 0)
    closed = [r for channel, event, r in app.state.recent_turns if channel == "phone" and event == "closed"]
    assert closed and closed[0]["bot_text"]
    # A hang-up may follow the `stop` (if the socket is still open when the call is cancelled), for this call only;
    # the hang-up of an admitted call is shown in test_phone.py.
    assert set(deployment.hangups) <= {result.call_sid}


async def test_a_replayed_token_is_refused(deployment):
    call_sid = new_call_sid()
    parameters = await deployment.invite(call_sid)
    app = deployment.server.app
    start = start_message(call_sid=call_sid, parameters=parameters)
    async with websockets.connect(deployment.stream_url, additional_headers=deployment.signed()) as ws:
        await ws.send(start)
        await wait_for(lambda: app.state.admission.active == 1)  # admitted
        await ws.send(json.dumps({"event": "stop", "streamSid": STREAM_SID}))
    await wait_for(lambda: app.state.admission.active == 0)
    before = await deployment.refused_count("token_replayed")
    closed = await closed_after_start(deployment.stream_url, deployment.signed(), start)
    assert closed.rcvd.code == 1008
    assert await deployment.refused_count("token_replayed") == before + 1


@pytest.mark.parametrize("path", ["/twilio/stream", "/twilio/stream/another-instance"])
async def test_a_token_only_opens_the_stream_path_it_was_issued_for(deployment, path):
    """The probe used a token at another instance's path and at the bare path: both are refused now, and the
    token still opens its own path afterwards (a refused attempt does not use it up)."""
    call_sid = new_call_sid()
    start = start_message(call_sid=call_sid, parameters=await deployment.invite(call_sid))
    url = f"{deployment.server.ws}{path}"
    before = await deployment.refused_count("token_invalid")
    closed = await closed_after_start(url, deployment.signed(url), start)
    assert closed.rcvd.code == 1008 and await deployment.refused_count("token_invalid") == before + 1
    app = deployment.server.app
    async with websockets.connect(deployment.stream_url, additional_headers=deployment.signed()) as ws:
        await ws.send(start)
        await wait_for(lambda: app.state.admission.active == 1)
        await ws.send(json.dumps({"event": "stop", "streamSid": STREAM_SID}))
    await wait_for(lambda: app.state.admission.active == 0)


async def test_a_captured_signed_webhook_posted_again_is_refused(deployment):
    """The probe captured one signed webhook and posted the same bytes a second later: it got a new stream token.
    Now the signature is good once."""
    call_sid = new_call_sid()
    first = await deployment.post_webhook(call_sid)
    before = await deployment.refused_count("replay")
    replayed = await deployment.post_webhook(call_sid)
    assert first.status_code == 200 and replayed.status_code == 403, replayed.text
    assert "streamToken" not in replayed.text
    assert await deployment.refused_count("replay") == before + 1


async def test_a_second_stream_for_a_live_call_is_refused_whatever_its_token(deployment):
    """A second stream for call C while C's own stream is live (here with a token from a second, differently signed
    webhook for C) is closed with 1008 and counted; the live stream goes on."""
    call_sid = new_call_sid()
    app = deployment.server.app
    first = start_message(call_sid=call_sid, parameters=await deployment.invite(call_sid))
    await asyncio.sleep(1.1)  # tokens carry their expiry in seconds: a second later, a different (valid) token
    second = start_message(call_sid=call_sid, parameters=await deployment.invite(call_sid, CallStatus="ringing"))
    assert first != second
    before = await deployment.refused_count("second_stream")
    async with websockets.connect(deployment.stream_url, additional_headers=deployment.signed()) as ws:
        await ws.send(first)
        await wait_for(lambda: app.state.admission.active == 1)
        closed = await closed_after_start(deployment.stream_url, deployment.signed(), second)
        assert closed.rcvd.code == 1008
        assert await deployment.refused_count("second_stream") == before + 1
        assert app.state.admission.active == 1  # the call's own stream is still live
        await ws.send(json.dumps({"event": "stop", "streamSid": STREAM_SID}))
    await wait_for(lambda: app.state.admission.active == 0)


async def test_the_webhook_refuses_large_or_foreign_bodies(deployment):
    form = {"CallSid": new_call_sid(), "AccountSid": ACCOUNT_SID, "Junk": "x" * 70_000}
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, deployment.webhook_url, form)}

    async def chunks():
        for _ in range(40):
            yield b"CallSid=" + b"A" * 4096

    async with httpx.AsyncClient() as client:
        large = await client.post(deployment.webhook_url, data=form, headers=headers)
        as_json = await client.post(deployment.webhook_url, json={"CallSid": new_call_sid()})
        streamed = await client.post(  # no Content-Length: the limit holds while reading
            deployment.webhook_url,
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert large.status_code == 413 and streamed.status_code == 413
    assert as_json.status_code == 415


async def test_the_webhook_checks_repeated_fields_as_twilio_signs_them(deployment):
    fields = [("CallSid", new_call_sid()), ("AccountSid", ACCOUNT_SID), ("Digits", "1"), ("Digits", "2")]

    class Repeated(dict):  # how Twilio signs repeated keys: every value, sorted
        def getlist(self, key):
            return [v for k, v in fields if k == key]

    async def post(signed: dict) -> httpx.Response:
        signature = twilio_signature(AUTH_TOKEN, deployment.webhook_url, signed)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        async with httpx.AsyncClient() as client:
            return await client.post(deployment.webhook_url, content=urlencode(fields), headers=headers)

    good = await post(Repeated(fields))
    assert good.status_code == 200 and "<Stream" in good.text
    assert (await post(dict(fields))).status_code == 403  # signed with the last "Digits" only


async def test_an_oversize_frame_closes_the_socket(deployment):
    async with websockets.connect(deployment.stream_url, additional_headers=deployment.signed()) as ws:
        await ws.send("x" * (64 * 1024 + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 1009  # message too big, before the server read any of it


async def admitted_stream(deployment: Deployment) -> websockets.ClientConnection:
    call_sid = new_call_sid()
    parameters = await deployment.invite(call_sid)
    ws = await websockets.connect(deployment.stream_url, additional_headers=deployment.signed())
    await ws.send(start_message(call_sid=call_sid, parameters=parameters))
    await wait_for(lambda: deployment.server.app.state.admission.active == 1)
    return ws


@pytest.mark.slow
async def test_a_flooding_caller_is_dropped_then_disconnected_with_bounded_memory(deployment):
    speech = to_phone_audio(load("ten_of_clubs.wav").tobytes(), 16000)
    frames = [media_message(speech[i : i + 160].ljust(160, b"\xff")) for i in range(0, len(speech), 160)]
    ws = await admitted_stream(deployment)
    # The caller talks normally first (a question, then silence while it is answered): what the call itself
    # allocates (its pipeline, its first transcription and answer) is not the flood's doing.
    await send_in_real_time(ws, frames + [media_message(b"\xff" * 160)] * 150)
    started = time.monotonic()
    async with memory_growth() as growth:
        await send_until_cut(ws, frames)  # 10x real time
        await wait_for(lambda: deployment.server.app.state.admission.active == 0)
    assert time.monotonic() - started > 4.5  # dropped for 5 s before it was cut
    assert ws.close_code == 1008 and ws.close_reason == "flood"
    growth.check("phone flood")


async def test_a_burst_after_jitter_is_accepted(deployment):
    """Two seconds of backlog at once (a carrier catching up after a network stall), then real time: no drop."""
    ws = await admitted_stream(deployment)
    try:
        for _ in range(100):
            await ws.send(media_message(b"\xff" * 160))
        for _ in range(100):
            await ws.send(media_message(b"\xff" * 160))
            await asyncio.sleep(0.02)
        assert ws.close_code is None
    finally:
        await ws.close()
    await wait_for(lambda: deployment.server.app.state.admission.active == 0)


@pytest.mark.slow
async def test_malformed_storm_and_oversize_frames_keep_memory_bounded(deployment):
    messages = ["{", "[" * 60_000, json.dumps({"event": "media", "media": "x"}), "x" * 60_000]
    async with memory_growth() as growth:
        for _ in range(20):  # oversize frames, each closing its socket
            async with websockets.connect(deployment.stream_url, additional_headers=deployment.signed()) as ws:
                await ws.send(b"\x00" * (1024 * 1024))
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
        for _ in range(200):  # forged streams
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(deployment.stream_url):
                    pass
        ws = await admitted_stream(deployment)
        await send_until_cut(ws, messages)  # 500 a second
        await wait_for(lambda: deployment.server.app.state.admission.active == 0)
    growth.check("oversize frames, forged streams, malformed storm")


async def test_a_silent_session_is_closed(local_runtime):
    async with serving(create_app(local_settings(session_idle_timeout_seconds=1.5), runtime=local_runtime)) as server:
        async with websockets.connect(f"{server.ws}/twilio/stream") as ws:  # unsigned: this machine only
            await ws.send(start_message())
            await ws.send(media_message(b"\xff" * 160))
            started = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        assert 1.4 < time.monotonic() - started < 5
        assert ws.close_code == 1008 and ws.close_reason == "idle"
        await wait_for(lambda: server.app.state.admission.active == 0)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{server.http}/metrics")).text
        assert 'voice_agent_input_disconnects_total{channel="phone",reason="idle"} 1.0' in metrics


async def test_unsigned_mode_serves_this_machine_only(local_runtime):
    async with serving(create_app(local_settings(), runtime=local_runtime)) as server:
        forwarded = {"X-Forwarded-For": "203.0.113.9"}  # a tunnel or proxy on this machine
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(f"{server.ws}/twilio/stream", additional_headers=forwarded):
                pass
        assert refused.value.response.status_code == 403
        async with httpx.AsyncClient() as client:
            webhook = await client.post(
                f"{server.http}/twilio/voice", data={"CallSid": new_call_sid()}, headers=forwarded
            )
            local = await client.post(f"{server.http}/twilio/voice", data={"CallSid": new_call_sid()})
        assert webhook.status_code == 403
        assert local.status_code == 200 and "streamToken" not in local.text  # unsigned: no token to check


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"host": "0.0.0.0"}, "HOST=0.0.0.0"),
        ({"public_url": "https://agent.example.com"}, "PUBLIC_URL=https://agent.example.com"),
        ({"host": "0.0.0.0", "twilio_allow_unsigned": True}, None),
        ({"host": "0.0.0.0", "twilio_auth_token": SecretStr(AUTH_TOKEN)}, None),
    ],
)
def test_a_public_server_needs_the_auth_token_or_an_explicit_opt_out(local_runtime, overrides, error):
    settings = local_settings(**overrides)
    if error is None:
        create_app(settings, runtime=local_runtime)
        return
    with pytest.raises(SettingsError) as refused:
        create_app(settings, runtime=local_runtime)
    assert error in str(refused.value) and "TWILIO_ALLOW_UNSIGNED=true" in str(refused.value)


def test_tokens_are_single_use_short_lived_and_bound_to_the_call():
    now = [1000.0]
    tokens = StreamTokens(b"k" * 32, 30, clock=lambda: now[0])
    here = {"carrier": "twilio", "instance": "pod-a"}
    token = tokens.issue("CA" + "1" * 32, **here)
    tokens.redeem(token, "CA" + "1" * 32, **here)
    with pytest.raises(Exception, match="already used"):
        tokens.redeem(token, "CA" + "1" * 32, **here)
    other = tokens.issue("CA" + "2" * 32, **here)
    with pytest.raises(Exception, match="not issued for this call"):
        tokens.redeem(other, "CA" + "3" * 32, **here)
    with pytest.raises(Exception, match="not issued for this call, carrier and instance"):
        tokens.redeem(other, "CA" + "2" * 32, carrier="telnyx", instance="pod-a")  # another carrier's stream
    with pytest.raises(Exception, match="not issued for this call, carrier and instance"):
        tokens.redeem(other, "CA" + "2" * 32, carrier="twilio", instance="pod-b")  # another instance's path
    now[0] += 31
    with pytest.raises(Exception, match="expired"):
        tokens.redeem(other, "CA" + "2" * 32, **here)
    tokens.issue("CA" + "4" * 32, **here)
    fresh = tokens.issue("CA" + "4" * 32, **here)
    tokens.redeem(fresh, "CA" + "4" * 32, **here)
    assert tokens.remembered == 1  # the expired first token was forgotten: memory is bounded by the lifetime
    assert base64.urlsafe_b64decode(token.split(".")[1] + "=")  # URL-safe: fits a TwiML attribute as is
