"""The one voice pipeline every entry point runs (replay, browser, phone), assembled here and nowhere else.

One turn, in order:
  transport in -> Silero VAD -> Whisper STT -> speculation trigger -> user context aggregator (turn taking,
  barge-in) -> streaming chat LLM -> clause-chunked local TTS -> transport out -> assistant context aggregator.

The VAD calls speech over at the first moment of silence; Whisper transcribes then, and the speculation trigger
starts the LLM on those words while the (adaptive) end-of-turn wait runs, so by the time the turn is confirmed
the answer is usually already streaming.

The assistant aggregator sits after the output transport, so the context keeps only the words whose audio was
actually played: on barge-in the unplayed rest of the answer never enters the conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import EndFrame, Frame, TTSSpeakFrame
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from agent.latency.observer import TurnLatencyObserver
from agent.llm.service import StreamingChatLLMService
from agent.runtime import AgentRuntime
from agent.speech.stt import WhisperSTTService
from agent.speech.tts import LocalTTSService
from agent.turn_taking import AdaptiveTurnStopStrategy, SpeculationTrigger

CALL_LIMIT_GOODBYE = "We have reached the time limit for this call. Thank you for calling, goodbye!"


@dataclass
class VoiceCall:
    """One caller's pipeline, ready to run, with its latency observer and conversation context."""

    worker: PipelineWorker
    latency: TurnLatencyObserver
    context: LLMContext


def build_voice_call(
    runtime: AgentRuntime,
    transport: BaseTransport,
    latency: TurnLatencyObserver,
    *,
    sample_rate_in: int,
    sample_rate_out: int,
    observers: Sequence[BaseObserver] = (),
) -> VoiceCall:
    settings = runtime.settings
    vad = SileroVADAnalyzer(
        sample_rate=sample_rate_in,
        params=VADParams(
            confidence=0.6,
            start_secs=settings.vad_start_ms / 1000,
            stop_secs=settings.vad_stop_ms / 1000,
            min_volume=0.3,
        ),
    )
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(
                start=[VADUserTurnStartStrategy()],
                stop=[
                    AdaptiveTurnStopStrategy(
                        short_wait_s=settings.end_of_turn_min_ms / 1000, long_wait_s=settings.end_of_turn_max_ms / 1000
                    )
                ],
            ),
        ),
    )
    llm = StreamingChatLLMService(
        runtime.llm,
        context=context,
        system_prompt=settings.system_prompt,
        max_sentences=settings.max_spoken_sentences,
        fallback=runtime.fallback,
        hedge_after_s=settings.hedge_after_ms / 1000 if runtime.fallback else None,
        acknowledgement=settings.acknowledgement,
        acknowledge_after_s=settings.acknowledge_after_ms / 1000 or None,
    )
    speech = runtime.speech
    pipeline = Pipeline(
        [
            transport.input(),
            VADProcessor(vad_analyzer=vad),
            WhisperSTTService(speech.transcriber),
            *([SpeculationTrigger(llm)] if settings.speculate else []),
            aggregators.user(),
            llm,
            LocalTTSService(
                speech.voice,
                phrases=speech.phrases,
                first_clause_min_words=settings.first_clause_min_words,
                first_clause_max_words=settings.first_clause_max_words,
            ),
            transport.output(),
            aggregators.assistant(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=sample_rate_in,
            audio_out_sample_rate=sample_rate_out,
            enable_metrics=True,
        ),
        observers=[latency, *observers],
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    return VoiceCall(worker=worker, latency=latency, context=context)


async def run_voice_call(call: VoiceCall, *, max_duration_s: float | None = None, goodbye: str = "") -> None:
    """Run one call's pipeline until it ends (EndFrame, cancel, or the transport closing).

    With `max_duration_s`, the agent ends the call itself at that point: it says `goodbye`, then an EndFrame
    closes the pipeline (and the transport: a phone call is hung up).
    """
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(call.worker)
    limit = asyncio.create_task(_end_after(call, max_duration_s, goodbye)) if max_duration_s else None
    try:
        await runner.run()
    finally:
        if limit:
            limit.cancel()


async def _end_after(call: VoiceCall, seconds: float, goodbye: str) -> None:
    await asyncio.sleep(seconds)
    logger.info(f"call time limit of {seconds:.0f} s reached: ending the call")
    frames: list[Frame] = [TTSSpeakFrame(goodbye)] if goodbye else []
    await call.worker.queue_frames([*frames, EndFrame()])
