"""Tools in a real call: recorded (synthetic) speech asks for a table, the provider simulator streams a
`book_table` call split across chunks, the booking is written to a real SQLite database, and the caller hears the
answer, never the same booking twice; the local model, which has no tools, says it cannot do it."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

from agent.llm.client import NO_TOOLS_NOTE
from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from agent.tools.registry import Tool, ToolRegistry
from bench.audio import build_call
from pipelines.replay import replay_call
from tests.conftest import sim_settings

pytestmark = pytest.mark.slow

BOOKING = ("book_table", {"party_size": 2, "time": "19:30", "name": "Smith"})


@pytest.fixture
def sim():
    server = ProviderSim(first_token_s=0.05, answer="Done, your table for two is booked for seven thirty.")
    server.tool_calls = [BOOKING]
    server.start()
    yield server
    server.stop()


def bookings(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT party_size, starts_at, name FROM bookings").fetchall()


async def test_book_a_table_for_two_at_half_past_seven(sim, speech, tmp_path):
    db = tmp_path / "bookings.sqlite3"
    settings = sim_settings(sim, booking_db_path=str(db))
    call = build_call(tmp_path / "book.wav", [0.3, "synth_table_for_two.wav", 1.0])
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        result = await replay_call(runtime, call)
    [turn] = result.turns
    assert turn["outcome"] == "answered" and turn["llm"]["tools"] == ["book_table"], turn
    assert turn["bot_text"] == "Done, your table for two is booked for seven thirty."
    rows = bookings(db)
    assert len(rows) == 1 and rows[0][0] == 2 and rows[0][1].endswith("19:30") and rows[0][2] == "Smith"
    # The request after the tool carried the call and its result; the conversation keeps them.
    follow_up = sim.requests[-1]["body"]["messages"]
    assert [m["role"] for m in follow_up[-2:]] == ["assistant", "tool"] and '"booked"' in follow_up[-1]["content"]
    assert any(m.get("role") == "tool" for m in result.messages)


async def test_the_local_model_without_tools_is_told_to_say_it_cannot(local_runtime, tmp_path):
    client = local_runtime.llm
    body = client.request_body([{"role": "system", "content": "Be brief."}], tools=local_runtime.tools.schemas())
    assert "tools" not in body and body["messages"][0]["content"].endswith(NO_TOOLS_NOTE)
    call = build_call(tmp_path / "book.wav", [0.3, "synth_table_for_two.wav", 1.0])
    [turn] = (await replay_call(local_runtime, call)).turns
    assert turn["outcome"] == "answered" and not turn["llm"]["tools"]


async def test_a_barge_in_during_a_slow_tool_keeps_its_result_unspoken(sim, speech, tmp_path):
    async def look_up_order() -> dict:
        await asyncio.sleep(5.0)  # a slow back-end
        return {"status": "shipped"}

    sim.tool_calls = [("look_up_order", {})]
    settings = sim_settings(sim)
    # The caller asks, and speaks again 3 s later: long after the turn ended, while the tool still runs.
    call = build_call(tmp_path / "barge.wav", [0.3, "synth_delivery.wav", 3.0, "ten_of_clubs.wav", 8.0])
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        slow = Tool(FunctionSchema("look_up_order", "Where is the order?", {}, []), look_up_order, timeout_s=10)
        result = await replay_call(replace(runtime, tools=ToolRegistry([slow])), call)
    first = result.turns[0]
    assert first["filler_ms"] is not None  # the hold phrase played while the tool ran
    assert first["outcome"] == "interrupted" and first["answer_ms"] is None  # the answer was never spoken
    results = [m for m in result.messages if m.get("role") == "tool"]
    assert results and "shipped" in results[0]["content"]  # but the conversation knows what the tool found
