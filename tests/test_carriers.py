"""Every carrier's call end to end, one module over the registry (`agent/telephony/registry.py`), each as the
carrier places it: the webhook signed the carrier's way (Twilio: HMAC over URL and form; Telnyx: ed25519 over
timestamp|body; Plivo: V3 with its nonce), the answer document read, the stream opened with the call's one-time
token, recorded speech as the caller, the real local speech models (the LLM is the provider simulator: the
carriers are what is under test), marks (Plivo: checkpoints) echoed once played, clears honoured, bad messages
dropped, latency measured as the caller hears it; the forgeries each gate refuses before any pipeline exists
(Telnyx and Plivo here, Twilio's in test_phone_security.py); and each carrier's busy answer from a full server."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.llm.simulator import ProviderSim
from agent.phone_client import call_unless_rejected, caller_for, place_call, run_call, to_phone_rate
from agent.server.app import create_app
from agent.telephony.dialect import CallIds, StreamInvite
from agent.telephony.registry import CARRIERS as REGISTRY
from agent.telephony.telnyx import stream as telnyx
from agent.telephony.tokens import StreamTokens
from bench.audio import build_call, load, transcripts, word_error_rate
from bench.serving import serving
from tests.carrier_doubles import PLIVO_ID, PLIVO_TOKEN
from tests.conftest import local_settings
from tests.phone_deployment import (
    SIM_ANSWER,
    TELNYX_ACCOUNT,
    TELNYX_SIGNING_KEY,
    TOKEN_SECRET,
    phone_deployment,
    simulated_runtime,
)
from tests.servers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.process]

CARRIERS = list(REGISTRY)
GATED = ["telnyx", "plivo"]  # the gate tests below; Twilio's gate has its own in test_phone_security.py
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
async def runtime(speech):
    async with simulated_runtime(speech, ProviderSim(first_token_s=0.05, answer=SIM_ANSWER)) as started:
        yield started


@pytest.fixture(scope="module")
async def deployment(runtime):
    async with phone_deployment(runtime) as running:
        yield running


def metric_value(metrics: str, series: str) -> float:
    return next((float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(series + " ")), 0.0)


def refused_count(metrics: str, reason: str) -> float:
    return metric_value(metrics, f'voice_agent_refused_total{{channel="phone",reason="{reason}"}}')


def answer_count(metrics: str) -> float:
    return metric_value(metrics, 'voice_agent_answer_seconds_count{channel="phone"}')


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_two_question_call_is_answered_as_the_carrier_places_it(deployment, carrier, tmp_path):
    deployment.app.state.recent_turns.clear()
    call = build_call(tmp_path / "two.wav", [0.4, "ill_disposed.wav", 6.0, "ten_of_clubs.wav", 0.4])
    answers_before = answer_count(await deployment.metrics())
    result = await place_call(call, deployment.webhook(carrier), dialect=deployment.caller(carrier))
    assert result.invite.url == deployment.stream(carrier)
    assert [t["first_sound_ms"] is not None for t in result.turns] == [True, True], result.turns  # heard replies
    assert all(0 < t["first_sound_ms"] < 3000 for t in result.turns), result.turns
    marks = {"utterance-1-start", "utterance-1-end", "utterance-2-start", "utterance-2-end", "answer-1", "answer-2"}
    assert marks <= set(result.marks_echoed), result.marks_echoed  # Plivo's checkpoints, Telnyx's marks
    await wait_for(lambda: deployment.app.state.admission.active == 0, timeout_s=20)
    turns = deployment.phone_turns()
    expected = transcripts()
    assert len(turns) == 2 and all(t["bot_text"] and t["outcome"] == "answered" for t in turns), turns
    assert word_error_rate(expected["ill_disposed.wav"], turns[0]["user_text"]) <= 0.35
    assert word_error_rate(expected["ten_of_clubs.wav"], turns[1]["user_text"]) <= 0.35
    # The echoed answer marks gave the server the phone side's playout time, as for Twilio: the caller's first
    # sound of each reply (an acknowledgement may come first) is no later than the answer the server saw heard.
    heard = deployment.phone_turns("heard")
    assert len(heard) == 2 and all(r["heard_ms"] >= r["answer_ms"] for r in heard)
    # The two clocks start at two estimates of the caller's end of speech (the recording's energy outside, the
    # turn's 8 kHz audio in the server), which differ by up to ~180 ms on a soft last word: the 250 ms tolerance
    # covers that, not a filler (~0.5 s).
    for outside, report in zip(result.turns, heard, strict=True):
        assert outside["first_sound_ms"] <= report["heard_ms"] + 200, (outside, report)
        filler_first = report["filler_ms"] is not None and report["filler_ms"] < report["answer_ms"]
        earliest = report["filler_ms"] if filler_first else report["heard_ms"]
        assert outside["first_sound_ms"] >= earliest - 250, (outside, report)
    assert not any(d.requests for d in deployment.doubles.values())  # the caller hung up: no REST hang-up
    metrics = await deployment.metrics()
    assert answer_count(metrics) == answers_before + 2
    assert 'voice_agent_turns_total{channel="phone",outcome="answered"' in metrics


async def test_telnyx_speaks_pcma_both_ways(runtime, tmp_path):
    async with phone_deployment(runtime, telnyx_codec="PCMA") as pcma:
        call = build_call(tmp_path / "one.wav", [0.4, "ten_of_clubs.wav", 2.0])
        result = await place_call(call, pcma.webhook("telnyx"), dialect=(caller := pcma.caller("telnyx")))
        assert caller.encoding == "PCMA"  # the TeXML asked for it (codec and bidirectionalCodec)
        assert result.turns[0]["first_sound_ms"] is not None, result.turns
        [turn] = pcma.phone_turns()
        assert word_error_rate("ten of clubs", turn["user_text"]) <= 0.35 and turn["bot_text"]
        # What came back was A-law: decoded as such it is speech, not the noise mu-law bytes would make of it.
        heard = result.heard_audio
        assert max(abs(int.from_bytes(heard[i : i + 2], "little", signed=True)) for i in range(0, len(heard), 2)) > 2000


async def test_a_telnyx_call_in_the_older_documented_forms_is_answered(deployment, tmp_path):
    """A bare-UUID CallSid (Telnyx's "TeXML instruction fetching" example) and a stream whose media_format says
    "audio/x-mulaw" (the older streaming example): the probe got 400 and 1008; the call is answered."""
    call = build_call(tmp_path / "older.wav", [0.4, "ten_of_clubs.wav", 2.0])
    caller = caller_for("telnyx", signing_key=TELNYX_SIGNING_KEY, account_id=TELNYX_ACCOUNT, older_forms=True)
    ids = caller.new_ids()
    assert telnyx.UUID.fullmatch(ids.call_id)
    result = await place_call(call, deployment.webhook("telnyx"), dialect=caller, ids=ids)
    assert result.turns[0]["first_sound_ms"] is not None, result.turns


# The whole barge-in for one carrier: Plivo's is the one that differs most (`clearAudio`, which the phone side
# confirms, and checkpoints for marks). Every carrier's clear message is checked frame by frame in
# test_carrier_wire.py; the rest of the path is the same for all of them.
@pytest.mark.parametrize("carrier", ["plivo"])
async def test_barge_in_clears_the_answer(deployment, carrier, tmp_path):
    deployment.app.state.recent_turns.clear()
    call = build_call(tmp_path / "barge.wav", [0.5, "ill_disposed.wav", 1.6, "amiable.wav", 2.0])
    result = await place_call(call, deployment.webhook(carrier), dialect=deployment.caller(carrier))
    assert result.clears >= 1  # Twilio's and Telnyx's `clear`, Plivo's `clearAudio`
    turns = deployment.phone_turns()
    assert turns[0]["cut"] and turns[-1]["bot_text"], (turns, result.turns)
    # The cut answer's audio stopped soon after the caller started talking over it (at 5.09 s in the call).
    heard = result.heard_audio
    barge_at = 0.5 + 2.99 + 1.6
    window = heard[int((barge_at + 0.7) * 8000) * 2 : int((barge_at + 2.5) * 8000) * 2]
    assert max(abs(int.from_bytes(window[i : i + 2], "little", signed=True)) for i in range(0, len(window), 2)) < 300


async def open_admitted(deployment, carrier: str) -> tuple[websockets.ClientConnection, CallIds, list[str]]:
    """A stream opened as the carrier opens it, after the webhook gave the call its token: the socket, the call's
    ids and the opening messages (as a listener on the wire would capture them)."""
    caller = deployment.caller(carrier)
    ids = caller.new_ids()
    invite = await caller.invite(deployment.webhook(carrier), ids)
    opening = caller.opening(ids, invite)
    ws = await websockets.connect(invite.url, additional_headers=caller.upgrade_headers(invite.url))  # Twilio signs it
    for message in opening:
        await ws.send(message)
    return ws, ids, opening


async def closed_after(url: str, messages: list[str]) -> websockets.ConnectionClosed:
    async with websockets.connect(url) as ws:
        for message in messages:
            await ws.send(message)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    return closed.value


MALFORMED_EVENTS = [
    {"event": "mystery"},
    {"event": "media", "media": None},
    {"event": "media", "media": {"payload": 5}},
    {"event": "mark", "mark": {"name": ["a"]}},
    {"event": "dtmf", "dtmf": "5"},
    {"event": "dtmf", "dtmf": {"digit": ["5"]}},
    {"event": {"a": 1}},
    json.loads("[" * 5 + "]" * 5),
]


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_bad_messages_are_dropped_and_the_call_goes_on(deployment, carrier):
    deployment.app.state.recent_turns.clear()
    caller = deployment.caller(carrier)
    ws, ids, _ = await open_admitted(deployment, carrier)
    await wait_for(lambda: deployment.app.state.admission.active == 1)
    for junk in ["not json", b"\x00binary", "[" * 60_000, json.dumps({"event": "media", "media": "x"}),
                 json.dumps({"event": "media", "media": {"payload": "%%%"}}), json.dumps({"event": "dtmf"}),
                 json.dumps({"event": "dtmf", "dtmf": {"digit": "X"}}), json.dumps({"event": "playedStream"}),
                 json.dumps({"event": "mark", "mark": 5}), json.dumps({"event": "error", "payload": {"code": 1}}),
                 json.dumps({"event": ["media"]}), "x" * 60_000]:  # fmt: skip
        await ws.send(junk)
    for malformed in MALFORMED_EVENTS:
        await ws.send(json.dumps(malformed))
    speech = caller.encode(to_phone_rate(load("ten_of_clubs.wav").tobytes(), 16000))
    frames = [speech[i : i + 160].ljust(160, caller.silence[:1]) for i in range(0, len(speech), 160)]
    got_audio = False
    for index, frame in enumerate(frames + [caller.silence] * 200):
        await ws.send(caller.media(ids, frame, index))
        await asyncio.sleep(0.02)
        try:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.001))
                got_audio = got_audio or caller.read(message).kind == "media"
        except TimeoutError:
            pass
        if got_audio:
            break
    assert got_audio, "the agent never answered after the bad messages"
    await ws.close()
    await wait_for(lambda: deployment.app.state.admission.active == 0)


def minted(call_id: str, carrier: str, *, age_s: float = 0.0) -> str:
    """A token minted with the server's secret (as another process would), `age_s` in the past."""
    tokens = StreamTokens(TOKEN_SECRET.encode(), 30, clock=lambda: time.time() - age_s)
    return tokens.issue(call_id, carrier=carrier, instance=local_settings().instance)


def forged_openings(carrier: str, deployment) -> dict[str, tuple[list[str], str]]:
    """Streams whose opening is not an admitted call's: (messages, the refusal reason counted)."""
    caller = deployment.caller(carrier)
    ids = caller.new_ids()
    other_account = "MA" + "Z" * 18 if carrier == "plivo" else "00000000-0000-4000-8000-000000000000"

    def opening(parameters: dict[str, str], **changes: str) -> list[str]:
        forged = CallIds(**{**ids.__dict__, **changes})
        return caller.opening(forged, StreamInvite(deployment.stream(carrier), parameters))

    def token(call_id: str, **age: float) -> dict[str, str]:
        return {"streamToken": minted(call_id, carrier, **age)}

    return {
        "no token": (opening({}), "token_missing"),
        "garbage token": (opening({"streamToken": "123.abc"}), "token_invalid"),
        "token of another call": (opening({"streamToken": minted(caller.new_ids().call_id, carrier)}), "token_invalid"),
        "expired token": (opening({"streamToken": minted(ids.call_id, carrier, age_s=60)}), "token_expired"),
        "another account": (
            opening({"streamToken": minted(ids.call_id, carrier)}, account_id=other_account),
            "account",
        ),
        "call id with a path": (opening({"streamToken": minted("x", carrier)}, call_id="../../calls/x"), "sid_format"),
        "no start": (['{"event": "media", "media": {"payload": "AAAA"}}'], "handshake"),
    }


@pytest.mark.parametrize("carrier", GATED)
async def test_streams_the_webhook_did_not_admit_are_refused_before_any_pipeline(deployment, carrier):
    for case, (messages, reason) in forged_openings(carrier, deployment).items():
        before = refused_count(await deployment.metrics(), reason)
        closed = await closed_after(deployment.stream(carrier), messages)
        assert closed.rcvd.code == 1008, case
        assert deployment.app.state.admission.active == 0, case  # no session was claimed: no pipeline was built
        assert refused_count(await deployment.metrics(), reason) == before + 1, case
    assert not any(d.requests for d in deployment.doubles.values())  # and no REST request for a refused stream


@pytest.mark.parametrize("carrier", GATED)
async def test_a_replayed_stream_opening_is_refused(deployment, carrier):
    ws, _, opening = await open_admitted(deployment, carrier)
    await wait_for(lambda: deployment.app.state.admission.active == 1)  # admitted once
    await ws.close()
    await wait_for(lambda: deployment.app.state.admission.active == 0)
    before = refused_count(await deployment.metrics(), "token_replayed")
    closed = await closed_after(deployment.stream(carrier), opening)  # the same opening, as captured on the wire
    assert closed.rcvd.code == 1008
    assert refused_count(await deployment.metrics(), "token_replayed") == before + 1


@pytest.mark.parametrize("carrier", GATED)
async def test_webhooks_without_the_carriers_signature_are_refused(deployment, carrier):
    caller = deployment.caller(carrier)
    form = caller.webhook_form(caller.new_ids(), "inbound")
    url = deployment.webhook(carrier)
    body = urlencode(form).encode()
    signed = caller.signature_headers(url, form, body)
    forgeries = {
        "unsigned": {},
        "signature of another body": caller.signature_headers(url, {**form, "From": "+15559999999"}, b"From=x"),
    }
    if carrier == "telnyx":
        forgeries["ten minutes old"] = telnyx.sign(TELNYX_SIGNING_KEY, int(time.time()) - 600, body)
        forgeries["another key"] = telnyx.sign(Ed25519PrivateKey.generate(), int(time.time()), body)
    else:
        forgeries["signature of another URL"] = caller.signature_headers(url + "?dial=x", form, body)
        forgeries["no nonce"] = {k: v for k, v in signed.items() if k != "X-Plivo-Signature-V3-Nonce"}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient() as client:
        good = await client.post(url, content=body, headers=headers | signed)
        assert good.status_code == 200 and "streamToken" in good.text
        for case, forged in forgeries.items():
            answer = await client.post(url, content=body, headers=headers | forged)
            assert answer.status_code == 403, case


@pytest.mark.parametrize("carrier", GATED)
async def test_callbacks_that_redirect_a_call_need_the_carriers_signature(deployment, carrier):
    """A forged answering-machine result would send any call to voicemail; a forged transfer document (Plivo)
    would put it through anywhere."""
    caller = deployment.caller(carrier)
    ids = caller.new_ids()
    machine = {"telnyx": {"CallSid": ids.call_id, "AnsweredBy": "machine_end_beep"},
               "plivo": {"CallUUID": ids.call_id, "Machine": "true"}}[carrier]  # fmt: skip
    base = deployment.server.http
    async with httpx.AsyncClient() as client:
        forged = await client.post(f"{base}/{carrier}/amd", data=machine)
    assert forged.status_code == 403
    if carrier == "plivo":
        abroad = await caller.post(f"{base}/plivo/transfer?to=%2B442071234567", {"CallUUID": ids.call_id})
        assert abroad.status_code == 403  # signed, but not a number of DIAL_ALLOWLIST
        async with httpx.AsyncClient() as client:
            unsigned = await client.post(f"{base}/plivo/voicemail", data={"CallUUID": ids.call_id})
        assert unsigned.status_code == 403
        allowed = await caller.post(f"{base}/plivo/transfer?to=%2B15550009999", {"CallUUID": ids.call_id})
        assert allowed.status_code == 200 and "<Number>15550009999</Number>" in allowed.text
    assert not any(d.requests for d in deployment.doubles.values())  # nothing reached a carrier's REST API


@pytest.mark.parametrize("carrier", GATED)
async def test_without_the_carriers_credential_only_this_machine_gets_in(runtime, carrier):
    forwarded = {"X-Forwarded-For": "203.0.113.9"}  # a tunnel or proxy on this machine
    caller = caller_for(carrier)  # signs nothing: the server holds no credential to check
    form = caller.webhook_form(caller.new_ids(), "inbound")
    for opened, expected in ((False, 403), (True, 200)):
        settings = local_settings(**{f"{carrier}_allow_unsigned": opened})
        async with serving(create_app(settings, runtime=runtime)) as server, httpx.AsyncClient() as client:
            remote = await client.post(f"{server.http}/{carrier}/voice", data=form, headers=forwarded)
            assert remote.status_code == expected, (opened, remote.text)
            local = await client.post(f"{server.http}/{carrier}/voice", data=form)
            assert local.status_code == 200 and "streamToken" not in local.text  # unsigned: no token to check
            if not opened:
                with pytest.raises(websockets.InvalidStatus) as refused:
                    async with websockets.connect(f"{server.ws}/{carrier}/stream", additional_headers=forwarded):
                        pass
                assert refused.value.response.status_code == 403


async def test_voice_agent_call_places_a_call_in_the_carriers_protocol(deployment, tmp_path):
    """`voice-agent call --carrier plivo`: the webhook signed with PLIVO_AUTH_TOKEN from its environment, the
    stream in Plivo's messages, keys pressed as asked, each turn's latency printed as heard."""
    deployment.app.state.recent_turns.clear()
    call = build_call(tmp_path / "one.wav", [0.4, "ten_of_clubs.wav", 5.0])
    report = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLIVO_AUTH_TOKEN": PLIVO_TOKEN, "PLIVO_AUTH_ID": PLIVO_ID}
    command = [sys.executable, "-m", "agent.cli", "--env-file", "", "call", str(call), "--carrier", "plivo",
               "--url", deployment.webhook("plivo"), "--digits", "3.5:4,3.7:2", "--report", str(report)]  # fmt: skip
    run = functools.partial(subprocess.run, command, capture_output=True, text=True, timeout=90, env=env, check=False)
    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "turn 1: caller spoke" in done.stdout and "first sound of the reply after" in done.stdout, done.stdout
    assert json.loads(report.read_text())["turns"][0]["first_sound_ms"] is not None
    await wait_for(lambda: deployment.app.state.admission.active == 0)
    turns = deployment.phone_turns()
    assert word_error_rate("ten of clubs", turns[0]["user_text"]) <= 0.35
    assert any(t["user_text"] == "[keypad] 42" for t in turns), turns  # the keys, as Plivo's dtmf messages


BUSY_ANSWERS = {
    "twilio": '<Response><Reject reason="busy"/></Response>',  # TwiML: not answered, not billed
    "telnyx": '<Response><Reject reason="busy"/></Response>',  # TeXML: the same verb
    "plivo": '<Response><Hangup reason="busy"/></Response>',  # Plivo XML: Hangup as the first element
}


async def test_a_full_server_answers_every_carrier_busy(deployment, tmp_path, capsys):
    """Each carrier's webhook gets its own busy document when no slot is free, reserves nothing, and the caller
    (`voice-agent call` as that carrier) hears busy."""
    call = build_call(tmp_path / "call.wav", [0.5, "ten_of_clubs.wav", 1.0])
    admission = deployment.app.state.admission
    async with deployment.full():
        reserved = admission.reserved
        for carrier, busy in BUSY_ANSWERS.items():
            caller = deployment.caller(carrier)
            response = await caller.post(deployment.webhook(carrier), caller.webhook_form(caller.new_ids(), "inbound"))
            assert response.status_code == 200 and response.text.endswith(busy), (carrier, response.text)
            assert await call_unless_rejected(call, deployment.webhook(carrier), dialect=caller) is None
            assert await run_call(call, deployment.webhook(carrier), deployment.caller(carrier)) == 1
            assert "the server rejected the call: busy" in capsys.readouterr().out
        assert admission.reserved == reserved and admission.active == 0  # nothing was held for a refused call
