"""The Cartesia and ElevenLabs doubles answer pipecat's own services with real speech, word times and every reply
the providers document; they refuse what the providers refuse."""

from __future__ import annotations

import json
import time

import pytest
import websockets
from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame, TTSStoppedFrame, TTSTextFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test
from websockets.asyncio.client import connect

from agent.runtime import SpeechModels
from agent.settings import SettingsError
from agent.speech.cartesia import API_VERSION, CARTESIA
from agent.speech.elevenlabs import ELEVENLABS
from bench.audio import word_error_rate
from bench.speech_doubles.base import Faults
from bench.speech_doubles.cartesia import CartesiaDouble
from bench.speech_doubles.elevenlabs import ElevenLabsDouble
from tests.conftest import local_settings

KEY = "sk_car_test_0123456789"
VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
VOICE_ID = "21m00Tcm4TlvDq8ikWAM"
SENTENCE = "The table is booked for seven tonight."


def cartesia_service(origin: str) -> CartesiaTTSService:
    settings = CartesiaTTSService.Settings(voice=VOICE, model="sonic-3.6")
    return CartesiaTTSService(api_key=KEY, url=f"{origin}/tts/websocket", settings=settings)


def elevenlabs_service(origin: str) -> ElevenLabsTTSService:
    settings = ElevenLabsTTSService.Settings(voice=VOICE_ID, model="eleven_flash_v2_5")
    return ElevenLabsTTSService(api_key=KEY, url=origin, settings=settings)


@pytest.mark.parametrize(
    ("double_class", "service_for"),
    [(CartesiaDouble, cartesia_service), (ElevenLabsDouble, elevenlabs_service)],
    ids=["cartesia", "elevenlabs"],
)
async def test_pipecat_service_gets_real_speech_and_word_times(speech: SpeechModels, double_class, service_for) -> None:
    double = double_class(KEY, speech.voice)
    async with double.running():
        down, _ = await run_test(
            service_for(double.origin),
            frames_to_send=[TTSSpeakFrame(SENTENCE), SleepFrame(sleep=3.0)],
            pipeline_params=PipelineParams(audio_out_sample_rate=16000),
        )
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    heard = " ".join(f.text for f in down if isinstance(f, TTSTextFrame))
    assert any(isinstance(f, TTSStoppedFrame) for f in down)  # the double closed the context
    assert len(audio) / 32000 > 1.0
    assert word_error_rate(SENTENCE, heard) == 0.0  # word by word, from the double's timestamps
    assert word_error_rate(SENTENCE, speech.transcriber.transcribe(audio, 16000)) <= 0.25
    assert not double.violations
    assert double.connections[0].received  # what pipecat sent was checked message by message


@pytest.mark.parametrize(
    ("double_class", "provider", "voice"), [(CartesiaDouble, CARTESIA, VOICE), (ElevenLabsDouble, ELEVENLABS, VOICE_ID)]
)
async def test_startup_check_passes_the_key_and_names_a_refused_one(
    speech: SpeechModels, double_class, provider, voice
) -> None:
    name = provider.name
    double = double_class(KEY, speech.voice)
    base = {"tts_provider": name, f"{name}_voice": voice, f"{name}_base_url": "ws://127.0.0.1:9"}
    async with double.running():
        base[f"{name}_base_url"] = double.origin
        await provider.check(local_settings(**base, **{f"{name}_api_key": KEY}))
        with pytest.raises(SettingsError) as refused:
            await provider.check(local_settings(**base, **{f"{name}_api_key": "nope"}))
    assert str(refused.value) == f"{name.upper()}_API_KEY was rejected by {name} (HTTP 401)"
    with pytest.raises(SettingsError, match=f"^TTS_PROVIDER={name} needs {name.upper()}_API_KEY$"):
        await provider.check(local_settings(**base))
    assert not double.violations


async def test_cartesia_needs_a_published_api_version(speech: SpeechModels) -> None:
    double = CartesiaDouble(KEY, speech.voice)
    async with double.running():
        with pytest.raises(websockets.InvalidStatus) as no_version:
            async with connect(f"{double.origin}/tts/websocket", additional_headers={"X-API-Key": KEY}):
                pass
    assert no_version.value.response.status_code == 400


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


async def test_cartesia_first_audio_comes_at_the_published_speed(speech: SpeechModels) -> None:
    """`Faults.latency_s` is the time from a request to its first chunk (the local voice's time counted in it); the
    rest of the audio follows at once."""
    double = CartesiaDouble(KEY, speech.voice, Faults(latency_s=0.5))
    headers = {"X-API-Key": KEY, "Cartesia-Version": API_VERSION}
    request = {
        "transcript": SENTENCE, "context_id": "c1", "model_id": "sonic-3.6", "voice": {"mode": "id", "id": VOICE},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
    }  # fmt: skip
    async with double.running(), connect(f"{double.origin}/tts/websocket", additional_headers=headers) as socket:
        sent = time.monotonic()
        await socket.send(json.dumps(request))
        arrivals = []
        while (reply := json.loads(await socket.recv()))["type"] != "done":
            arrivals.append((reply["type"], time.monotonic() - sent))
    chunks = [at for kind, at in arrivals if kind == "chunk"]
    assert len(chunks) > 5
    assert chunks[0] >= 0.5
    assert chunks[-1] - chunks[0] < 0.25  # the pace holds the first chunk only
