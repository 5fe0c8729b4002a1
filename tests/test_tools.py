"""Tools: the registry, the clock, and table booking written to a real SQLite file; end to end, a completion
from the simulator scripted to call `book_table` (its arguments split across chunks), run through the registry,
and the result sent back for the spoken answer."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pydantic import SecretStr

from agent.llm.client import ChatCompletionClient, StreamStats
from agent.llm.providers import provider_for
from agent.llm.simulator import ProviderSim
from agent.settings import Settings, SettingsError
from agent.tools.booking import BookingStore, booking_tool
from agent.tools.calls import MAX_ARGUMENT_CHARS, ToolCall, ToolCallAssembler
from agent.tools.catalog import build_registry
from agent.tools.clock import clock_tool, current_time
from agent.tools.registry import Tool, ToolRegistry

DAY = date.today() + timedelta(days=30)  # within the booking window (BOOKING_DAYS_AHEAD, a year by default)
BOOKING = {"party_size": 2, "time": "19:30", "date": DAY.isoformat(), "name": "Ada"}


def call(name: str, arguments: str, call_id: str = "call_1") -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "bookings.sqlite3"


@pytest.fixture
def registry(db_path):
    return build_registry(Settings.load(None, booking_db_path=str(db_path)))


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT party_size, starts_at, name, idempotency_key FROM bookings ORDER BY id").fetchall()


def test_schemas_are_openai_tools(registry):
    schemas = registry.schemas()
    assert [s["function"]["name"] for s in schemas] == ["current_time", "book_table"]
    book = schemas[1]
    assert book["type"] == "function"
    assert book["function"]["parameters"]["required"] == ["party_size", "time"]
    assert book["function"]["parameters"]["properties"]["party_size"]["type"] == "integer"


def test_tools_setting_chooses_the_tools(db_path):
    assert build_registry(Settings.load(None, tools="clock", booking_db_path=str(db_path))).names == ["current_time"]
    assert not build_registry(Settings.load(None, tools="")).names
    with pytest.raises(SettingsError, match="TOOLS"):
        Settings.load(None, tools="clock,teleport")


def test_a_booking_database_that_cannot_be_opened_names_the_setting(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SettingsError, match="BOOKING_DB_PATH"):
        build_registry(Settings.load(None, booking_db_path=str(tmp_path / "file" / "bookings.sqlite3")))


async def test_booking_writes_a_row_to_sqlite(registry, db_path):
    arguments = json.dumps({"party_size": 2, "time": "19:30", "date": DAY.isoformat()})
    result = await registry.run(call("book_table", arguments), "t1")
    assert result.ok and result.content["booked"] and result.content["starts_at"] == f"{DAY}T19:30"
    assert result.content["confirmation"] == f"a table for 2 at 19:30 on {DAY:%A %d %B}"
    assert rows(db_path) == [(2, f"{DAY}T19:30", "", f"t1|2|{DAY}T19:30:00|")]
    message = result.as_message()
    assert message["role"] == "tool" and message["tool_call_id"] == "call_1" and '"booked": true' in message["content"]


async def test_the_same_booking_in_the_same_turn_is_made_once_even_when_racing(registry, db_path):
    arguments = json.dumps({"party_size": 4, "time": "20:00", "date": DAY.isoformat()})
    racing = await asyncio.gather(
        *(registry.run(call("book_table", arguments, f"call_{i}"), "turn-7") for i in range(5))
    )
    assert len({r.content["booking_id"] for r in racing}) == 1
    again = await registry.run(call("book_table", arguments), "turn-8")  # another turn: a real second booking
    assert again.content["booking_id"] != racing[0].content["booking_id"]
    assert len(rows(db_path)) == 2


async def test_the_idempotency_key_holds_across_registries(db_path):
    """Two processes (two registries on one file) booking the same thing for the same turn: one row."""
    first = ToolRegistry([booking_tool(BookingStore.open(db_path))])
    second = ToolRegistry([booking_tool(BookingStore.open(db_path))])
    arguments = json.dumps(
        {"party_size": 3, "time": "18:15", "date": (DAY + timedelta(days=1)).isoformat(), "name": "Grace"}
    )
    one = await first.run(call("book_table", arguments), "turn-1")
    two = await second.run(call("book_table", arguments), "turn-1")
    assert one.content["booking_id"] == two.content["booking_id"] and len(rows(db_path)) == 1


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ('{"party_size": 0, "time": "19:30"}', "1 to 20 guests"),
        ('{"party_size": 2, "time": "7.30pm"}', "HH:MM"),
        ('{"party_size": 2, "time": "19:30", "date": "tomorrow"}', "YYYY-MM-DD"),
        ('{"party_size": "two", "time": "19:30"}', "party_size should be integer"),
        ('{"time": "19:30"}', "missing party_size"),
        ('{"party_size": 2, "time": "19:30", "table": 5}', "unknown argument 'table'"),
        ('{"party_size": 2, "time": ', "not valid JSON"),
        ("[2]", "not a JSON object"),
    ],
)
async def test_bad_booking_requests_are_explained_and_book_nothing(registry, db_path, arguments, error):
    result = await registry.run(call("book_table", arguments), "t1")
    assert not result.ok and error in result.content["error"]
    assert rows(db_path) == []


@pytest.mark.parametrize(
    "day",
    [date.today() - timedelta(days=1), date(2001, 1, 1), date(1, 1, 1), date(9999, 12, 31),
     date.today() + timedelta(days=366)],
)  # fmt: skip
async def test_the_past_and_the_absurd_are_not_booked(registry, db_path, day):
    result = await registry.run(
        call("book_table", json.dumps({"party_size": 2, "time": "19:30", "date": str(day)})), "t1"
    )
    assert not result.ok and "we take bookings from today" in result.content["error"], result.content
    assert rows(db_path) == []


async def test_a_name_is_stored_printable_and_bounded_and_so_is_its_key(registry, db_path):
    name = "Eve\x00\u202emalloC" + "x" * 15_000  # NUL, a right-to-left override, and 15,000 more characters
    result = await registry.run(call("book_table", json.dumps({**BOOKING, "name": name})), "t1")
    assert result.ok, result.content
    [(_, _, stored, key)] = rows(db_path)
    assert stored == ("EvemalloC" + "x" * 15_000)[:80] and len(key) < 200, (stored, len(key))
    assert not any(c in stored + key for c in "\x00\u202e")


async def test_unknown_tool_is_an_error_result(registry):
    result = await registry.run(call("launch_rocket", "{}"), "t1")
    assert not result.ok and "no tool called 'launch_rocket'" in result.content["error"]


def test_clock_in_a_named_time_zone():
    fixed = datetime(2031, 5, 17, 18, 5, tzinfo=UTC)
    result = current_time("Asia/Tokyo", now=lambda: fixed)
    assert result["time"] == "03:05" and result["spoken_time"] == "3:05 AM" and result["date"] == "Sunday 18 May 2031"


async def test_clock_through_the_registry():
    registry = ToolRegistry([clock_tool()])
    local = await registry.run(call("current_time", "{}"), "t1")
    assert local.ok and len(local.content["time"]) == 5
    bad = await registry.run(call("current_time", '{"timezone": "Mars/Olympus"}'), "t1")
    assert bad.content == {"error": "unknown time zone 'Mars/Olympus'"}


async def test_a_failing_or_slow_tool_becomes_an_error_result():
    async def slow() -> dict:
        await asyncio.sleep(5)
        return {}

    def broken() -> dict:
        raise RuntimeError("secret internals")

    registry = ToolRegistry([
        Tool(FunctionSchema("slow", "Slow.", {}, []), slow, timeout_s=0.1),
        Tool(FunctionSchema("broken", "Broken.", {}, []), broken),
    ])  # fmt: skip
    assert (await registry.run(call("slow", "{}"), "t")).content == {"error": "slow took longer than 0.1 s"}
    failed = await registry.run(call("broken", "{}"), "t")
    assert failed.content == {"error": "broken failed"}  # the exception's text stays in the log


async def test_booking_end_to_end_from_a_streamed_tool_call(registry, db_path):
    sim = ProviderSim(wire="groq", first_token_s=0.01, answer="Your table for two is booked.").start()
    sim.tool_calls = [("book_table", BOOKING)]
    settings = Settings.load(None, llm_provider="groq", groq_api_key=SecretStr(sim.api_key), groq_base_url=sim.base_url)
    client = ChatCompletionClient(provider_for(settings, "groq"))
    messages = [{"role": "user", "content": "Book a table for two at 7:30 on the 17th of May 2031, name of Ada."}]
    try:
        stats = StreamStats()
        async for _ in client.stream(messages, stats, tools=registry.schemas()):
            pass
        [tool_call] = stats.tool_calls
        result = await registry.run(tool_call, "turn-1")
        assert result.ok
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [tool_call.as_message()]},
            result.as_message(),
        ]
        answer = "".join([c.content async for c in client.stream(messages, tools=registry.schemas())])
    finally:
        await client.aclose()
        sim.stop()
    assert answer == "Your table for two is booked."
    assert rows(db_path) == [(2, f"{DAY}T19:30", "Ada", f"turn-1|2|{DAY}T19:30:00|Ada")]
    sent = sim.requests[-1]["body"]["messages"]
    assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == tool_call.id


def test_tool_call_deltas_interleaved_by_index_and_bounded():
    assembler = ToolCallAssembler()
    assembler.add([{"index": 0, "id": "call_a", "function": {"name": "current_time", "arguments": ""}}])
    assembler.add([{"index": 1, "id": "call_b", "function": {"name": "book_table", "arguments": '{"party'}}])
    assembler.add(
        [{"index": 0, "function": {"arguments": "{}"}}, {"index": 1, "function": {"arguments": '_size": 2}'}}]
    )
    first, second = assembler.complete()
    assert (first.id, first.name, first.arguments) == ("call_a", "current_time", "{}")
    assert (second.name, second.parsed_arguments()) == ("book_table", {"party_size": 2})
    endless = ToolCallAssembler()
    endless.add([{"index": 0, "id": "call_x", "function": {"name": "book_table", "arguments": ""}}])
    with pytest.raises(ValueError, match="longer than"):
        for _ in range(MAX_ARGUMENT_CHARS):
            endless.add([{"index": 0, "function": {"arguments": "xxxxxxxx"}}])
