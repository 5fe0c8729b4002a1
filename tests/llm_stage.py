"""The LLM stage alone, driven by pipecat's `run_test`: what it pushes for each question, without audio or models."""

from __future__ import annotations

from pipecat.frames.frames import Frame, LLMContextFrame, LLMServiceMetadataFrame, LLMTextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from agent.frames import CompletionStatsFrame
from agent.llm.service import StreamingChatLLMService
from agent.runtime import AgentRuntime


async def answer_frames(runtime: AgentRuntime, *questions: str, hedge_after_s: float | None = None) -> list[Frame]:
    """What the LLM stage on `runtime`'s provider chain pushes downstream for each question in turn (service
    metadata left out)."""
    context = LLMContext([])
    frames: list[Frame] = []
    for question in questions:
        context.add_message({"role": "user", "content": question})
        frames.append(LLMContextFrame(context=context))
    down, _ = await run_llm_stage(runtime, frames, hedge_after_s=hedge_after_s)
    return down


async def run_llm_stage(
    runtime: AgentRuntime, frames: list[Frame], *, hedge_after_s: float | None = None
) -> tuple[list[Frame], list[Frame]]:
    """The frames the LLM stage built as a call's pipeline builds it (the runtime's system prompt and judge) pushes
    downstream and upstream for `frames`, service metadata left out."""
    service = StreamingChatLLMService(
        runtime.chain,
        context=LLMContext([]),
        system_prompt=runtime.system_prompt,
        max_sentences=1,
        hedge_after_s=hedge_after_s,
        judge=runtime.judge,
    )
    down, up = await run_test(service, frames_to_send=frames)
    return [f for f in down if not isinstance(f, LLMServiceMetadataFrame)], list(up)


def spoken(frames: list[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def stats_of(frames: list[Frame]) -> list[CompletionStatsFrame]:
    return [f for f in frames if isinstance(f, CompletionStatsFrame)]
