"""The one voice pipeline every entry point runs (replay, browser, phone), assembled here and nowhere else.

One turn, in order:
  transport in -> VAD (Silero, let go at the true end of speech) -> Whisper STT (transcribing while the caller
  speaks; or a hosted recogniser, Whisper standing by) -> user context aggregator (end-of-turn strategy: the words
  model + the voice, or the provider's verdict; speculation, barge-in; the caller's audio goes no further) ->
  streaming chat LLM (raced over the provider chain; pipecat's speculation gate holds a speculative answer until
  the turn is confirmed) -> clause chunker -> local or hosted TTS -> phrase player (acknowledgement, apology,
  goodbye) -> onset hold (the answer's first audio waits while the caller may be starting to speak) -> transport
  out -> assistant context aggregator.

The assistant aggregator sits after the output transport, so the context keeps only the words whose audio was
actually played: on barge-in the unplayed rest of the answer never enters the conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from loguru import logger
from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FrameProcessed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.pipeline.worker_observer import WorkerObserver
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.filters.function_filter import FunctionFilter
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.empty_user_turn import EmptyUserTurnConfig
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from agent.frames import SpeakPhraseFrame
from agent.latency.observer import TurnLatencyObserver
from agent.llm.service import StreamingChatLLMService
from agent.protocols.quiet_line import QuietLineBatcher
from agent.runtime import AgentRuntime
from agent.settings import Settings
from agent.speech.clauses import ClauseChunker
from agent.speech.phrases import PhrasePlayer
from agent.speech.stages import speech_to_text, text_to_speech
from agent.turns.conversation import Conversation
from agent.turns.decision import RULE
from agent.turns.end_of_turn import EndOfTurnStrategy
from agent.turns.onset_hold import AnswerOnsetHold
from agent.turns.vad import build_vad

ONSET_HOLD_MARGIN_S = 0.1  # the answer's first audio is held at most the VAD's start time and this
EMPTY_TURNS_RESUMED = 5  # turns of no words in a row after which pipecat leaves the next unanswered


class PushedFramesObserver(WorkerObserver):
    """pipecat's proxy to a worker's observers, without the news of each processor handling each frame.

    pipecat sends every observer an event each time any processor handles any frame (`on_process_frame`), through a
    queue and a task per observer: for every 20 ms of the caller's audio, a task wake-up per observer at each of the
    four processors the audio crosses, all call long. A call's observers read the frames pushed and nothing else."""

    def __init__(self, *, observers: Sequence[BaseObserver]) -> None:
        reading = [o for o in observers if type(o).on_process_frame is not BaseObserver.on_process_frame]
        if reading:
            raise ValueError(f"{reading[0]} reads on_process_frame, which a call's worker does not send")
        super().__init__(observers=list(observers))

    async def on_process_frame(self, data: FrameProcessed) -> None:
        return None


class CallWorker(PipelineWorker):
    """pipecat's PipelineWorker for one call: its observers see the frames pushed (`PushedFramesObserver`), and
    none of pipecat's own (RTVI, its turn tracker: unread here, where latency/ keeps the turns; the idle timeout)."""

    def __init__(self, pipeline: Pipeline, *, params: PipelineParams, observers: Sequence[BaseObserver]) -> None:
        super().__init__(
            pipeline,
            params=params,
            observers=list(observers),
            enable_rtvi=False,
            enable_turn_tracking=False,
            idle_timeout_secs=None,
        )
        # In place of the proxy pipecat built for the same observers (with the flags above it adds none of its own).
        self._observer = PushedFramesObserver(observers=observers)


@dataclass
class VoiceCall:
    """One caller's pipeline, ready to run, with its latency observer and conversation context."""

    worker: PipelineWorker
    latency: TurnLatencyObserver
    context: LLMContext


QUIET_LINE_AFTER_WAIT_S = 0.5  # a quiet line is batched this long after the longest end-of-turn wait would be over


def quiet_line(settings: Settings) -> QuietLineBatcher:
    """The caller's frames in batches once their line has been quiet longer than any end-of-turn wait of the local
    decision: those waits are counted in audio frames, one by one. (The provider judge's longer waits are then
    counted a batch at a time, 0.1 s.)"""
    return QuietLineBatcher(after_s=settings.end_of_turn_max_ms / 1000 + QUIET_LINE_AFTER_WAIT_S)


def build_voice_call(
    runtime: AgentRuntime,
    transport: BaseTransport,
    latency: TurnLatencyObserver,
    *,
    sample_rate_in: int,
    sample_rate_out: int,
    observers: Sequence[BaseObserver] = (),
    live_transcript: bool = False,
) -> VoiceCall:
    """One call's pipeline. `live_transcript` sends interim transcripts while the caller speaks (the page shows
    them); a phone call has no one to read them, so its Whisper is kept free for the transcript that counts."""
    settings = runtime.settings
    vad = build_vad(settings, sample_rate_in)
    context = Conversation()
    judge = runtime.judge  # the provider judges the turns, or (None) the local models do
    end_of_turn = EndOfTurnStrategy(
        conversation=context,
        shortest_s=settings.end_of_turn_min_ms / 1000,
        longest_s=settings.end_of_turn_max_ms / 1000,
        rule=replace(RULE, threshold=settings.end_of_turn_threshold),
        budget_s=settings.latency_budget_ms / 1000,
        learn_pauses=settings.end_of_turn_learn_pauses,
        smart_turn=None if judge else runtime.speech.smart_turn,
        words=None if judge else runtime.speech.turn_words,
        vad=vad,
        speculate=settings.speculate,
        judge=judge,
    )
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(start=[VADUserTurnStartStrategy()], stop=[end_of_turn]),
            # A turn of no words (a cough) over the answer runs the LLM with pipecat's prompt for it, and the LLM
            # service resumes the cut answer instead (turns/backchannel.py): not only for the first such turn.
            empty_user_turn=EmptyUserTurnConfig(max_consecutive_recoveries=EMPTY_TURNS_RESUMED),
        ),
    )
    speech = runtime.speech
    acknowledge_after_s = settings.acknowledge_after_ms / 1000 if settings.acknowledge_after_ms else None
    pipeline = Pipeline(
        [
            transport.input(),
            VADProcessor(vad_analyzer=vad),
            *speech_to_text(
                settings, speech.transcriber, speech.voice, interim=live_transcript, voiced=lambda: vad.voiced_buffers
            ),
            aggregators.user(),
            FunctionFilter(_not_caller_audio, filter_system_frames=True),
            StreamingChatLLMService(
                runtime.chain,
                context=context,
                system_prompt=runtime.system_prompt,
                tools=runtime.tools,
                max_sentences=settings.max_spoken_sentences,
                hedge_after_s=settings.hedge_after_ms / 1000 if len(runtime.chain.clients) > 1 else None,
                judge=judge,
            ),
            ClauseChunker(
                min_clause_words=settings.first_clause_min_words, max_first_words=settings.first_clause_max_words
            ),
            text_to_speech(settings, speech.voice),
            PhrasePlayer(speech.phrases, acknowledge_after_s=acknowledge_after_s),
            AnswerOnsetHold(vad, max_hold_s=settings.vad_start_ms / 1000 + ONSET_HOLD_MARGIN_S),
            transport.output(),
            aggregators.assistant(),
        ]
    )
    worker = CallWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=sample_rate_in,
            audio_out_sample_rate=sample_rate_out,
            enable_metrics=True,
        ),
        observers=[latency, *observers],
    )
    return VoiceCall(worker=worker, latency=latency, context=context)


async def _not_caller_audio(frame: Frame) -> bool:
    """The caller's audio ends its way at the user aggregator: every 20 ms frame carried on through the rest of
    the pipeline (and shown to each observer at each step) cost CPU for the whole call, to no one's use."""
    return not isinstance(frame, InputAudioRawFrame)


async def run_voice_call(call: VoiceCall, *, max_duration_s: float | None = None) -> None:
    """Run one call's pipeline until it ends (EndFrame, cancel, or the transport closing).

    With `max_duration_s`, the agent ends the call itself at that point: it says its goodbye, then an EndFrame
    closes the pipeline (and the transport: a phone call is hung up). However the call ends, its last turn is closed
    in the latency report.
    """
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(call.worker)
    limit = asyncio.create_task(_end_after(call, max_duration_s)) if max_duration_s else None
    try:
        await runner.run()
    finally:
        if limit:
            limit.cancel()
        await call.latency.finish()


async def _end_after(call: VoiceCall, seconds: float) -> None:
    await asyncio.sleep(seconds)
    logger.info(f"call time limit of {seconds:.0f} s reached: ending the call")
    await call.worker.queue_frames([SpeakPhraseFrame(kind="goodbye"), EndFrame()])
