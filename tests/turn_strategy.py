"""An end-of-turn strategy driven frame by frame, without a pipeline: the events it fires, on an audio clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import InputAudioRawFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from agent.frames import TurnTranscriptionFrame, TurnVerdict, TurnVerdictFrame
from agent.turns.end_of_turn import EndOfTurnStrategy


@asynccontextmanager
async def strategy_events(strategy: EndOfTurnStrategy) -> AsyncIterator[StrategyEvents]:
    """`strategy` set up on this event loop, its events recorded; cleaned up on the way out."""
    task_manager = TaskManager(loop=asyncio.get_running_loop())
    await strategy.setup(FrameProcessorSetup(clock=SystemClock(), task_manager=task_manager, pipeline_worker=None))
    try:
        yield StrategyEvents(strategy)
    finally:
        await strategy.cleanup()


class StrategyEvents:
    """An end-of-turn strategy fed frames by hand: what it decided, and after how much silence (counted in the
    20 ms audio frames fed, faster than real time)."""

    def __init__(self, strategy: EndOfTurnStrategy) -> None:
        self.strategy = strategy
        self.silence_s = 0.0
        self.events: list[tuple[str, float]] = []
        strategy.add_event_handler("on_user_turn_inference_triggered", self._inferred)
        strategy.add_event_handler("on_user_turn_speculation_cancelled", self._withdrawn)
        strategy.add_event_handler("on_user_turn_stopped", self._stopped)

    async def _inferred(self, _strategy, speculation) -> None:
        self.events.append(("speculate" if speculation else "ask", round(self.silence_s, 2)))

    async def _withdrawn(self, _strategy) -> None:
        self.events.append(("withdraw", round(self.silence_s, 2)))

    async def _stopped(self, _strategy, params) -> None:
        self.events.append(("end, confirming" if params.confirms_speculation else "end", round(self.silence_s, 2)))

    async def caller_says(
        self, text: str, *, verdict: TurnVerdict | None = None, verdict_text: str | None = None
    ) -> None:
        """The caller says `text` and falls silent; the provider's verdict (if any) comes 0.1 s into the silence."""
        strategy = self.strategy
        await strategy.process_frame(VADUserStartedSpeakingFrame())
        await strategy.process_frame(VADUserStoppedSpeakingFrame())
        await strategy.process_frame(
            TurnTranscriptionFrame(text=text, user_id="", timestamp="", turn_text=text, segment=1)
        )
        silence = InputAudioRawFrame(audio=b"\0\0" * 160, sample_rate=8000, num_channels=1)
        while not any(name.startswith("end") for name, _ in self.events) and self.silence_s < 5:
            if verdict and abs(self.silence_s - 0.1) < 0.01:
                await strategy.process_frame(TurnVerdictFrame(verdict=verdict, text=verdict_text or text))
            self.silence_s += 0.02
            await strategy.process_frame(silence)
            await asyncio.sleep(0.004)
