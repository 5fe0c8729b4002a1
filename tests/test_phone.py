"""The Twilio Media Streams bridge over a real websocket, on the local models: streams that do not start properly,
a socket dropped mid-utterance, the TwiML webhook and the REST hang-up. A call answered as Twilio places it (with
barge-in and bad messages) is in the carrier-parametrised test_carriers.py."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.phone_client import place_call, to_phone_audio
from agent.server.app import create_app
from agent.telephony.twilio.stream import twilio_signature
from bench.audio import build_call, load
from bench.serving import serving
from bench.twilio_wire import ACCOUNT_SID, CALL_SID, media_message, start_message
from tests.conftest import local_settings
from tests.servers import wait_for


async def http_get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:  # async: the server runs on this same event loop
        return await client.get(url)


async def http_post(url: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(url, **kwargs)


@pytest.fixture(scope="module")
async def server(local_runtime):
    async with serving(create_app(local_settings(), runtime=local_runtime)) as running:
        yield running


def phone_turns(app, event: str = "closed") -> list[dict]:
    return [r for channel, e, r in app.state.recent_turns if channel == "phone" and e == event]


@pytest.mark.parametrize(
    "opening",
    [
        [json.dumps({"event": "media", "media": {"payload": "AAAA"}})],  # no `start`
        [start_message(media_format={"encoding": "audio/l16", "sampleRate": 16000, "channels": 1})],
        [b"binary first"],
        ["{not json"],
    ],
)
async def test_a_stream_that_does_not_start_properly_is_closed(server, opening):
    async with websockets.connect(f"{server.ws}/twilio/stream") as ws:
        for message in opening:
            await ws.send(message)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 1008
    assert (await http_get(f"{server.http}/health")).json()["status"] == "ok"


async def test_socket_dropped_mid_utterance_releases_the_call(server):
    speech = to_phone_audio(load("ill_disposed.wav").tobytes(), 16000)
    ws = await websockets.connect(f"{server.ws}/twilio/stream")
    await ws.send(start_message())
    for i in range(0, len(speech) // 2, 160):
        await ws.send(media_message(speech[i : i + 160]))
        await asyncio.sleep(0.02)
    await wait_for(lambda: server.app.state.admission.active == 1)
    ws.transport.abort()  # no close handshake, no `stop`: the line just went dead
    await wait_for(lambda: server.app.state.admission.active == 0)
    assert (await http_get(f"{server.http}/health")).json()["status"] == "ok"


async def test_webhook_answers_twiml_and_checks_signatures(local_runtime):
    settings = local_settings(public_url="https://agent.example.com", twilio_auth_token=SecretStr("tok"))
    async with serving(create_app(settings, runtime=local_runtime)) as running:
        form = {"CallSid": CALL_SID, "From": "+15550001111", "To": "+15550002222", "AccountSid": ACCOUNT_SID}
        url = "https://agent.example.com/twilio/voice"
        good = await http_post(
            f"{running.http}/twilio/voice",
            data=form,
            headers={"X-Twilio-Signature": twilio_signature("tok", url, form)},
        )
        assert good.status_code == 200 and good.headers["content-type"].startswith("application/xml")
        assert '<Parameter name="From" value="+15550001111"/>' in good.text
        assert '<Parameter name="streamToken" value="' in good.text  # the call's one-time stream token
        bad = await http_post(f"{running.http}/twilio/voice", data=form, headers={"X-Twilio-Signature": "forged"})
        assert bad.status_code == 403
        missing = await http_post(f"{running.http}/twilio/voice", data=form)
        assert missing.status_code == 403
        assert '<Stream url="wss://agent.example.com/twilio/stream/' in good.text  # names this instance
        running.app.state.admission.start_drain()  # a draining server takes no new call
        busy = await http_post(
            f"{running.http}/twilio/voice",
            data=form | {"CallSid": "CA" + "2" * 32},
            headers={"X-Twilio-Signature": twilio_signature("tok", url, form | {"CallSid": "CA" + "2" * 32})},
        )
        assert busy.status_code == 200 and '<Response><Reject reason="busy"/></Response>' in busy.text


@pytest.mark.slow
async def test_agent_ending_the_call_hangs_up_through_the_rest_api(local_runtime, tmp_path):
    hangups: list[dict] = []

    async def call_resource(request: Request) -> JSONResponse:
        form = dict(await request.form())
        hangups.append({"path": request.url.path, "form": form, "auth": request.headers.get("authorization")})
        return JSONResponse({"sid": request.path_params["sid"], "status": "completed"})

    route = Route("/2010-04-01/Accounts/{account}/Calls/{sid}.json", call_resource, methods=["POST"])
    async with serving(Starlette(routes=[route])) as twilio_rest:
        settings = local_settings(
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=SecretStr("tok" * 8),
            twilio_api_base_url=twilio_rest.http,
            max_call_seconds=2.5,
        )
        async with serving(create_app(settings, runtime=local_runtime)) as running:
            call = build_call(tmp_path / "long.wav", [0.3, "ten_of_clubs.wav", 8.0])
            webhook = f"{running.http}/twilio/voice"
            result = await place_call(call, webhook, auth_token="tok" * 8, account_sid=ACCOUNT_SID)
            await wait_for(lambda: bool(hangups))
    assert hangups[0]["form"] == {"Status": "completed"}
    assert hangups[0]["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{result.call_sid}.json"
    assert hangups[0]["auth"].startswith("Basic ")
    assert result.closed_by_server  # and the stream was closed from our side


@pytest.mark.slow
async def test_without_credentials_the_agent_closes_the_stream_cleanly(local_runtime, tmp_path):
    async with serving(create_app(local_settings(max_call_seconds=2.0), runtime=local_runtime)) as running:
        call = build_call(tmp_path / "long.wav", [0.3, "ten_of_clubs.wav", 8.0])
        result = await place_call(call, f"{running.ws}/twilio/stream")
        assert result.closed_by_server
        await wait_for(lambda: running.app.state.admission.active == 0)
