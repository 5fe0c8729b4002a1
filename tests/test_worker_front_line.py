"""What a worker process queues for the front over `/control` (`agent/server/worker.py`'s `FrontLine`), alone:
each turn report under its channel, the LLM providers' state after a closed turn and after each call, the input
bound a caller broke, and `idle` once a call is over. The whole control line, between real processes, is in
test_workers.py."""

from __future__ import annotations

import asyncio

import pytest

from agent.llm.simulator import ProviderSim
from agent.server.calls import InProcessCalls
from agent.server.worker import FrontLine
from tests.phone_deployment import simulated_runtime


async def queued(front: FrontLine, count: int) -> list[dict]:
    return [await asyncio.wait_for(front.next_message(), 1) for _ in range(count)]


async def test_turns_violations_providers_and_idle_reach_the_front_in_order(speech):
    async with simulated_runtime(speech, ProviderSim()) as runtime:
        calls = InProcessCalls(runtime)
        front = FrontLine()
        on_turn, on_violation = front.reports("phone", calls).listeners
        on_turn("answered", {"turn": 1})
        on_violation("burst")
        on_turn("closed", {"turn": 1})
        front.call_over(calls)
        sent = await queued(front, 6)
    assert [m["type"] for m in sent] == ["turn", "violation", "turn", "providers", "providers", "idle"]
    with pytest.raises(TimeoutError):  # and nothing more
        await asyncio.wait_for(front.next_message(), 0.1)
    assert sent[0] == {"type": "turn", "channel": "phone", "event": "answered", "report": {"turn": 1}}
    assert sent[1] == {"type": "violation", "channel": "phone", "reason": "burst"}
    assert [r["name"] for r in sent[3]["readings"]] == ["cerebras"]
