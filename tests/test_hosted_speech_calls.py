"""Phone calls answered end to end with hosted speech (`STT_PROVIDER=deepgram`, `TTS_PROVIDER=cartesia` or
`elevenlabs`) against the providers' doubles on 127.0.0.1, and with each hosted fault in the middle of the call:
the caller is still understood and answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from loguru import logger

from agent.llm.simulator import ProviderSim
from agent.phone_client import place_call
from agent.server.app import create_app
from bench.audio import build_call, normalize, transcripts, word_error_rate
from bench.serving import RunningServer, serving
from bench.speech_doubles.base import Faults, WebsocketDouble
from bench.speech_doubles.cartesia import CartesiaDouble
from bench.speech_doubles.deepgram import DeepgramDouble
from bench.speech_doubles.elevenlabs import ElevenLabsDouble
from tests.conftest import local_settings
from tests.phone_deployment import SIM_ANSWER, simulated_runtime
from tests.servers import wait_for

pytestmark = pytest.mark.slow  # real phone calls in real time against the doubles

KEY = "hosted-test-key-0123456789"


@pytest.fixture(scope="module")
async def runtime(speech):
    """The session's speech models, answering through the provider simulator: these calls test speech, and the
    local LLM's pauses on a busy machine made them fail for reasons outside it."""
    async with simulated_runtime(speech, ProviderSim(first_token_s=0.05, answer=SIM_ANSWER)) as runtime:
        yield runtime


VOICES = {"cartesia": "a0e99841-438c-4a64-b679-ae501e7d6091", "elevenlabs": "21m00Tcm4TlvDq8ikWAM"}
TTS_DOUBLES = {"cartesia": CartesiaDouble, "elevenlabs": ElevenLabsDouble}


@asynccontextmanager
async def hosted_call_server(
    runtime, tts: str, stt_faults: Faults | None = None, tts_faults: Faults | None = None
) -> AsyncIterator[tuple[RunningServer, DeepgramDouble, WebsocketDouble]]:
    """The agent's app on the test runtime, set to Deepgram and `tts`, each pointed at its double."""
    stt_double = DeepgramDouble(KEY, runtime.speech.transcriber, stt_faults)
    tts_double = TTS_DOUBLES[tts](KEY, runtime.speech.voice, tts_faults)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(stt_double.running())
        await stack.enter_async_context(tts_double.running())
        settings = local_settings(
            stt_provider="deepgram", deepgram_api_key=KEY, deepgram_base_url=stt_double.origin,
            tts_provider=tts, hosted_speech_timeout_ms=800,
            **{f"{tts}_api_key": KEY, f"{tts}_base_url": tts_double.origin, f"{tts}_voice": VOICES[tts]},
        )  # fmt: skip
        server = await stack.enter_async_context(serving(create_app(settings, runtime=runtime)))
        yield server, stt_double, tts_double


async def hang_up_once_answered(server: RunningServer, answered: asyncio.Event) -> None:
    """The caller hangs up a second after the agent finished its answer (the server closed the turn), instead of
    waiting out 6 s of quiet: that wait is only for an answer that starts late (a fallback taking over)."""
    while not any(event == "closed" for _, event, _ in server.app.state.recent_turns):
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    answered.set()


async def answered_turns(server: RunningServer, tmp_path, transcriber) -> list[dict]:
    """One question in a phone call: it was understood and answered, and the answer was heard."""
    server.app.state.recent_turns.clear()
    call = build_call(tmp_path / "call.wav", [0.3, "ill_disposed.wav", 0.3])
    answered = asyncio.Event()
    hang_up = asyncio.create_task(hang_up_once_answered(server, answered))
    try:
        result = await place_call(call, f"{server.ws}/twilio/stream", tail_s=6.0, hang_up=answered)
    finally:
        hang_up.cancel()
    await wait_for(lambda: server.app.state.admission.active == 0)
    assert result.turns and result.turns[0]["first_sound_ms"] is not None, result.turns
    turns = [r for channel, event, r in server.app.state.recent_turns if channel == "phone" and event == "closed"]
    assert len(turns) == 1, turns
    assert word_error_rate(transcripts()["ill_disposed.wav"], turns[0]["user_text"]) <= 0.35, turns
    # The caller heard the answer (most of its first words: Whisper tiny mishears the small voice now and then; the
    # local LLM may stall later on a busy machine, which is not speech's fault).
    heard = set(normalize(transcriber.transcribe(result.heard_audio, 8000)))
    opening = normalize(turns[0]["bot_text"])[:4]
    assert sum(word in heard for word in opening) >= len(opening) / 2, (turns[0]["bot_text"], heard)
    return turns


def logged_warnings() -> tuple[list[str], int]:
    warnings: list[str] = []
    return warnings, logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")


@pytest.mark.parametrize("tts", ["cartesia", "elevenlabs"])
async def test_a_call_is_answered_by_deepgram_and_a_hosted_voice(runtime, tmp_path, tts: str) -> None:
    async with hosted_call_server(runtime, tts) as (server, stt_double, tts_double):
        turns = await answered_turns(server, tmp_path, runtime.speech.transcriber)
    assert not stt_double.violations and not tts_double.violations
    assert {"type": "Finalize"} in stt_double.connections[0].received  # the VAD stop asked Deepgram for the words
    assert any(c.replies for c in tts_double.connections)  # the answer was spoken by the hosted voice
    stages = turns[0]["stages_ms"]
    assert stages["stt"] is not None and stages["tts"] is not None, turns


@pytest.mark.parametrize(
    "faults",
    [Faults(close_after=0), Faults(stall_after=0), Faults(malformed_after=0), Faults(refuse_key=True)],
    ids=["closed mid-stream", "stalled", "malformed reply", "key refused"],
)
async def test_a_failing_recogniser_falls_back_to_whisper_for_the_call(runtime, tmp_path, faults) -> None:
    warnings, sink = logged_warnings()
    try:
        async with hosted_call_server(runtime, "cartesia", faults) as (server, _, _):
            await answered_turns(server, tmp_path, runtime.speech.transcriber)
    finally:
        logger.remove(sink)
    assert any("the local Whisper transcribes the rest of this call" in w for w in warnings), warnings
    assert not any(KEY in w for w in warnings)


@pytest.mark.parametrize("tts", ["cartesia", "elevenlabs"])
@pytest.mark.parametrize(
    "faults",
    [Faults(close_after=1), Faults(stall_after=1), Faults(malformed_after=0), Faults(refuse_key=True)],
    ids=["closed mid-answer", "stalled mid-answer", "malformed reply", "key refused"],
)
async def test_a_failing_voice_falls_back_to_the_local_voice_for_the_call(
    runtime, tmp_path, tts: str, faults: Faults
) -> None:
    warnings, sink = logged_warnings()
    try:
        async with hosted_call_server(runtime, tts, tts_faults=faults) as (server, _, _):
            await answered_turns(server, tmp_path, runtime.speech.transcriber)
    finally:
        logger.remove(sink)
    assert any("the local voice speaks the rest of this call" in w for w in warnings), warnings
    assert not any(KEY in w for w in warnings)
