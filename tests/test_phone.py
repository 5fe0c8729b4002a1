"""The Twilio Media Streams bridge over a real websocket, driven by a client that behaves like Twilio (paced
20 ms mu-law media, marks echoed when their audio has played, `clear` honoured), on the local models."""

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
from tests.audio import build_call, load, transcripts, word_error_rate
from tests.conftest import local_settings
from tests.servers import serving, wait_for
from tests.twilio_wire import ACCOUNT_SID, CALL_SID, STREAM_SID, media_message, start_message


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


async def test_two_question_call_as_twilio_would_place_it(server, tmp_path):
    server.app.state.recent_turns.clear()
    call = build_call(tmp_path / "two.wav", [0.4, "ill_disposed.wav", 6.0, "ten_of_clubs.wav", 0.4])
    result = await place_call(call, f"{server.ws}/twilio/stream")
    assert [t["first_sound_ms"] is not None for t in result.turns] == [True, True], result.turns
    assert all(0 < t["first_sound_ms"] < 3000 for t in result.turns), result.turns
    # Each answer was bracketed by marks, and the client echoed every one of them once played.
    marks = {"utterance-1-start", "utterance-1-end", "utterance-2-start", "utterance-2-end", "answer-1", "answer-2"}
    assert marks <= set(result.marks_echoed), result.marks_echoed
    await wait_for(lambda: server.app.state.admission.active == 0)  # a clean `stop` ended the call
    turns = phone_turns(server.app)
    expected = transcripts()
    assert len(turns) == 2, turns
    assert word_error_rate(expected["ill_disposed.wav"], turns[0]["user_text"]) <= 0.35
    assert word_error_rate(expected["ten_of_clubs.wav"], turns[1]["user_text"]) <= 0.35
    assert all(t["bot_text"] for t in turns)
    # The echoed start marks gave the server the phone side's playout time.
    heard = phone_turns(server.app, "heard")
    assert len(heard) == 2 and all(r["heard_ms"] >= r["answer_ms"] for r in heard)
    # The phone side heard its first sound when the server says so: the answer when the echoed mark says it was
    # heard; an acknowledgement before it, between its sending and the answer. The two clocks start at two
    # estimates of the caller's end of speech (the whole recording's energy outside, the turn's 8 kHz audio in the
    # server), measured up to ~180 ms apart on a soft last word: the tolerance covers that, not a filler (~0.5 s).
    for outside, report in zip(result.turns, heard, strict=True):
        if report["filler_ms"] is not None and report["filler_ms"] < report["answer_ms"]:
            assert report["filler_ms"] - 250 <= outside["first_sound_ms"] <= report["heard_ms"] + 250, (outside, report)
        else:
            assert outside["first_sound_ms"] == pytest.approx(report["heard_ms"], abs=250), (outside, report)
    metrics = (await http_get(f"{server.http}/metrics")).text
    assert 'voice_agent_answer_seconds_count{channel="phone"} 2.0' in metrics
    assert 'voice_agent_turns_total{channel="phone",outcome="answered"' in metrics


async def test_barge_in_sends_clear_and_cuts_the_answer(server, tmp_path):
    server.app.state.recent_turns.clear()
    call = build_call(tmp_path / "barge.wav", [0.5, "ill_disposed.wav", 1.6, "amiable.wav", 5.0])
    result = await place_call(call, f"{server.ws}/twilio/stream")
    assert result.clears >= 1
    turns = phone_turns(server.app)
    assert turns[0]["cut"] and turns[-1]["bot_text"], (turns, result.turns)
    # The cut answer's audio stopped soon after the caller started talking over it (at 4.75 s in the call).
    heard = result.heard_audio
    barge_at = 0.5 + 2.99 + 1.6
    window = heard[int((barge_at + 0.7) * 8000) * 2 : int((barge_at + 2.5) * 8000) * 2]
    assert max(abs(int.from_bytes(window[i : i + 2], "little", signed=True)) for i in range(0, len(window), 2)) < 300


MALFORMED_EVENTS = [
    {"event": "media", "media": "x"},
    {"event": "media", "media": None},
    {"event": "media", "media": {"payload": 5}},
    {"event": "mark", "mark": 5},
    {"event": "mark", "mark": {"name": ["a"]}},
    {"event": "dtmf", "dtmf": "5"},
    {"event": "dtmf", "dtmf": {"digit": ["5"]}},
    {"event": ["media"]},
    {"event": {"a": 1}},
    json.loads("[" * 5 + "]" * 5),
]


async def test_bad_messages_are_ignored_and_the_call_goes_on(server):
    server.app.state.recent_turns.clear()
    speech = to_phone_audio(load("ten_of_clubs.wav").tobytes(), 16000)
    async with websockets.connect(f"{server.ws}/twilio/stream") as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(start_message())
        await ws.send("this is not json")
        await ws.send(b"\x00\x01binary")
        await ws.send(json.dumps({"event": "mystery"}))
        await ws.send(json.dumps({"event": "media", "media": {"payload": "%%%not base64%%%"}}))
        await ws.send("x" * 60_000)  # under the 64 KiB frame limit, but no Twilio message
        await ws.send("[" * 60_000)  # JSON nested deeper than Python's recursion limit
        for malformed in MALFORMED_EVENTS:
            await ws.send(json.dumps(malformed))
        await ws.send(
            json.dumps({"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"track": "inbound_track", "digit": "5"}})
        )
        frames = [speech[i : i + 160] for i in range(0, len(speech), 160)] + [b"\xff" * 160] * 150
        got_media = False
        for frame in frames:
            await ws.send(media_message(frame.ljust(160, b"\xff")))
            await asyncio.sleep(0.02)
            try:
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.001))
                    got_media = got_media or message["event"] == "media"
            except TimeoutError:
                pass
        assert got_media, "the agent never answered after the bad messages"
        await ws.send(json.dumps({"event": "stop", "streamSid": STREAM_SID}))
    await wait_for(lambda: server.app.state.admission.active == 0)
    assert phone_turns(server.app, "answered")[0]["user_text"]


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


async def test_without_credentials_the_agent_closes_the_stream_cleanly(local_runtime, tmp_path):
    async with serving(create_app(local_settings(max_call_seconds=2.0), runtime=local_runtime)) as running:
        call = build_call(tmp_path / "long.wav", [0.3, "ten_of_clubs.wav", 8.0])
        result = await place_call(call, f"{running.ws}/twilio/stream")
        assert result.closed_by_server
        await wait_for(lambda: running.app.state.admission.active == 0)
