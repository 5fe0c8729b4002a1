"""The Cartesia double answers pipecat's own Cartesia service with real speech, word times and every reply it
documents; it refuses what Cartesia refuses."""

from __future__ import annotations

import json

import pytest
import websockets
from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame, TTSStoppedFrame, TTSTextFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.tests.utils import SleepFrame, run_test
from websockets.asyncio.client import connect

from agent.runtime import SpeechModels
from agent.settings import SettingsError
from agent.speech.cartesia import API_VERSION, CARTESIA
from bench.speech_doubles.cartesia import CartesiaDouble
from tests.audio import word_error_rate
from tests.conftest import local_settings

KEY = "sk_car_test_0123456789"
VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
SENTENCE = "The table is booked for seven tonight."


async def test_pipecat_cartesia_service_gets_real_speech_and_word_times(speech: SpeechModels) -> None:
    double = CartesiaDouble(KEY, speech.voice)
    async with double.running():
        service = CartesiaTTSService(
            api_key=KEY,
            url=f"{double.origin}/tts/websocket",
            settings=CartesiaTTSService.Settings(voice=VOICE, model="sonic-3.6"),
        )
        down, _ = await run_test(
            service,
            frames_to_send=[TTSSpeakFrame(SENTENCE), SleepFrame(sleep=3.0)],
            pipeline_params=PipelineParams(audio_out_sample_rate=16000),
        )
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    heard = " ".join(f.text for f in down if isinstance(f, TTSTextFrame))
    assert any(isinstance(f, TTSStoppedFrame) for f in down)  # the double's done closed the context
    assert len(audio) / 32000 > 1.0
    assert word_error_rate(SENTENCE, heard) == 0.0  # word by word, from the double's timestamps
    assert word_error_rate(SENTENCE, speech.transcriber.transcribe(audio, 16000)) <= 0.25
    assert not double.violations
    request = double.connections[0].received[0]
    assert request["transcript"].strip() and request["add_timestamps"] is True


async def test_startup_check_and_refusals(speech: SpeechModels) -> None:
    double = CartesiaDouble(KEY, speech.voice)
    base = {"tts_provider": "cartesia", "cartesia_voice": VOICE}
    async with double.running():
        good = local_settings(**base, cartesia_api_key=KEY, cartesia_base_url=double.origin)
        await CARTESIA.check(good)
        with pytest.raises(SettingsError) as refused:
            await CARTESIA.check(local_settings(**base, cartesia_api_key="nope", cartesia_base_url=double.origin))
        with pytest.raises(websockets.InvalidStatus) as no_version:
            async with connect(f"{double.origin}/tts/websocket", additional_headers={"X-API-Key": KEY}):
                pass
    assert str(refused.value) == "CARTESIA_API_KEY was rejected by cartesia (HTTP 401)"
    assert no_version.value.response.status_code == 400
    with pytest.raises(SettingsError, match="^TTS_PROVIDER=cartesia needs CARTESIA_API_KEY$"):
        await CARTESIA.check(local_settings(**base))


async def test_a_bad_generation_request_gets_cartesias_error(speech: SpeechModels) -> None:
    double = CartesiaDouble(KEY, speech.voice)
    headers = {"X-API-Key": KEY, "Cartesia-Version": API_VERSION}
    request = {
        "transcript": "Hi.", "context_id": "c1", "model_id": "sonic-3.6", "voice": {"mode": "id", "id": VOICE},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}, "speed": "fast",
    }  # fmt: skip
    async with double.running(), connect(f"{double.origin}/tts/websocket", additional_headers=headers) as socket:
        await socket.send(json.dumps(request))
        error = json.loads(await socket.recv())
    assert error == {"type": "error", "context_id": "c1", "status_code": 400, "done": True,
                     "error": "unknown field speed"}  # fmt: skip
