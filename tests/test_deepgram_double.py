"""The Deepgram double speaks `/v1/listen` as documented, with real words; the start-up check reads its answers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import websockets
from websockets.asyncio.client import connect

from agent.runtime import SpeechModels
from agent.settings import SettingsError
from agent.speech.deepgram import DEEPGRAM
from bench.audio import load, normalize, transcripts, word_error_rate
from bench.speech_doubles.base import Faults
from bench.speech_doubles.deepgram import DeepgramDouble
from tests.conftest import local_settings

KEY = "dg-test-key-0123456789"
AUTHORIZATION = {"Authorization": f"Token {KEY}"}
QUERY = "model=nova-3-general&language=en&encoding=linear16&sample_rate=16000&channels=1&interim_results=true"


def settings_for(double: DeepgramDouble, **overrides):
    values = {"stt_provider": "deepgram", "deepgram_api_key": KEY, "deepgram_base_url": double.origin}
    return local_settings(**{**values, **overrides})


async def test_startup_check_passes_the_right_key_and_names_a_refused_one(speech: SpeechModels) -> None:
    double = DeepgramDouble(KEY, speech.transcriber)
    async with double.running():
        await DEEPGRAM.check(settings_for(double))
        assert double.connections[0].received[-1] == {"type": "CloseStream"}  # the check ends its session cleanly
        with pytest.raises(SettingsError) as refused:
            await DEEPGRAM.check(settings_for(double, deepgram_api_key="wrong-key"))
        with pytest.raises(SettingsError) as bad_model:
            await DEEPGRAM.check(settings_for(double, deepgram_model="nova-9"))
    assert str(refused.value) == "DEEPGRAM_API_KEY was rejected by deepgram (HTTP 401)"
    assert "wrong-key" not in str(refused.value)
    assert str(bad_model.value) == (
        "deepgram refused the connection (HTTP 400): check DEEPGRAM_MODEL, DEEPGRAM_LANGUAGE"
    )
    with pytest.raises(SettingsError, match="^STT_PROVIDER=deepgram needs DEEPGRAM_API_KEY$"):
        await DEEPGRAM.check(settings_for(double, deepgram_api_key=""))


async def test_an_unreachable_provider_does_not_stop_start_up(speech: SpeechModels) -> None:
    double = DeepgramDouble(KEY, speech.transcriber)
    async with double.running():
        settings = settings_for(double)
    await DEEPGRAM.check(settings)  # the port is closed now: logged, calls would use the local model


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        (QUERY, {"Authorization": "Bearer " + KEY}, 401),  # a key is sent as Token, not Bearer
        (QUERY, {}, 401),
        (QUERY + "&speed=fast", {"Authorization": "Token " + KEY}, 400),  # no such parameter
        (QUERY.replace("sample_rate=16000", "sample_rate=11025"), {"Authorization": "Token " + KEY}, 400),
        (QUERY + "&utterance_end_ms=500", {"Authorization": "Token " + KEY}, 400),  # under 1000 ms
        (QUERY + "&model=nova-2", {"Authorization": "Token " + KEY}, 400),  # given twice
    ],
)
async def test_the_double_refuses_what_deepgram_refuses(speech, query, headers, status) -> None:
    double = DeepgramDouble(KEY, speech.transcriber)
    async with double.running():
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(f"{double.origin}/v1/listen?{query}", additional_headers=headers):
                pass
    assert refused.value.response.status_code == status


async def test_real_speech_gets_interim_final_and_utterance_end_results(speech: SpeechModels) -> None:
    """Speech, a second of silence, a Finalize for what is left, CloseStream: every reply Deepgram documents."""
    double = DeepgramDouble(KEY, speech.transcriber)
    audio = np.concatenate([load("amiable.wav"), np.zeros(16000 * 13 // 10, np.int16)]).tobytes()
    replies = []
    async with double.running():
        url = f"{double.origin}/v1/listen?{QUERY}&utterance_end_ms=1000&endpointing=300"
        async with connect(url, additional_headers={"Authorization": f"Token {KEY}"}) as socket:
            for i in range(0, len(audio), 640):
                await socket.send(audio[i : i + 640])
            await socket.send(json.dumps({"type": "KeepAlive"}))
            await socket.send(json.dumps({"type": "Finalize"}))
            await socket.send(json.dumps({"type": "CloseStream"}))
            replies = [json.loads(m) async for m in socket]
            assert socket.close_code == 1000
    kinds = [(r["type"], r.get("is_final"), r.get("speech_final"), r.get("from_finalize")) for r in replies]
    finals = [r for r in replies if r.get("is_final") and r["channel"]["alternatives"][0]["transcript"]]
    speech_final = kinds.index(("Results", True, True, False))  # the endpointing silence ended the speech
    utterance_end = kinds.index(("UtteranceEnd", None, None, None))
    assert speech_final < utterance_end < kinds.index(("Results", True, False, True))  # then the Finalize's answer
    assert kinds[-1][0] == "Metadata"
    assert len(finals) == 1
    alternative = finals[0]["channel"]["alternatives"][0]
    assert word_error_rate(transcripts()["amiable.wav"], alternative["transcript"]) <= 0.2
    assert [w["punctuated_word"] for w in alternative["words"]] == alternative["transcript"].split()
    assert replies[utterance_end]["last_word_end"] == alternative["words"][-1]["end"]
    assert not double.violations


async def test_the_double_injects_faults_and_closes_on_a_bad_message(speech: SpeechModels) -> None:
    audio = load("five_five.wav").tobytes() + bytes(16000)
    double = DeepgramDouble(KEY, speech.transcriber, Faults(malformed_after=0))
    async with (
        double.running(),
        connect(f"{double.origin}/v1/listen?{QUERY}", additional_headers={"Authorization": f"Token {KEY}"}) as s,
    ):
        await s.send(audio)
        await s.send(json.dumps({"type": "Finalize"}))
        with pytest.raises(json.JSONDecodeError):
            json.loads(await s.recv())
        await s.send("not json")
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                json.loads(await s.recv())  # the rest is well formed, up to the close
        assert s.close_code == 1008
    assert double.violations == ["DATA-0000: a text message that is not JSON"]
    refusing = DeepgramDouble(KEY, speech.transcriber, Faults(refuse_key=True))
    async with refusing.running():
        with pytest.raises(SettingsError, match="rejected"):
            await DEEPGRAM.check(settings_for(refusing))


async def test_the_final_comes_at_the_published_speed(speech: SpeechModels) -> None:
    """`Faults.latency_s` is the time from a `Finalize` to its final result, Whisper's own time counted in it."""
    audio = load("five_five.wav").tobytes()
    double = DeepgramDouble(KEY, speech.transcriber, Faults(latency_s=1.0))
    async with (
        double.running(),
        connect(f"{double.origin}/v1/listen?{QUERY}&endpointing=false", additional_headers=AUTHORIZATION) as socket,
    ):
        await socket.send(audio)
        asked = time.monotonic()
        await socket.send(json.dumps({"type": "Finalize"}))
        while not (reply := json.loads(await socket.recv())).get("from_finalize"):
            pass
        answered = time.monotonic() - asked
    assert reply["channel"]["alternatives"][0]["transcript"]
    assert answered >= 1.0


async def test_a_final_after_a_pause_is_heard_with_the_utterance_so_far(speech: SpeechModels) -> None:
    """Two Finalizes around a mid-sentence pause: the second final says only the words after the first's, heard
    with them as context (a streaming recogniser keeps its state across a pause)."""
    audio = load("dashwood.wav")
    cut = int(3.96 * 16000)  # the word gap `bench/calls.py` pauses this sentence at
    pause = np.zeros(16000 * 3 // 10, np.int16)
    double = DeepgramDouble(KEY, speech.transcriber)
    finals = []
    async with (
        double.running(),
        connect(f"{double.origin}/v1/listen?{QUERY}&endpointing=false", additional_headers=AUTHORIZATION) as socket,
    ):
        for part in (audio[:cut], audio[cut:]):
            await socket.send(np.concatenate([part, pause]).tobytes())
            await socket.send(json.dumps({"type": "Finalize"}))
            while not (reply := json.loads(await socket.recv())).get("from_finalize"):
                pass
            finals.append(reply["channel"]["alternatives"][0]["transcript"])
    first, second = (normalize(text) for text in finals)
    assert first and second
    assert second[: len(first)] != first  # not the first final's words again
    assert word_error_rate(transcripts()["dashwood.wav"], " ".join(finals)) <= 0.25
