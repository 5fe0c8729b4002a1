"""Property-based fuzzing (hypothesis) of what strangers and providers send us: the Twilio Media Streams
deserializer and its `start` parser, the browser page's deserializer, and the SSE parser of LLM streams. Whatever
arrives, nothing raises out of them: input is either understood or dropped."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import InputAudioRawFrame, InputDTMFFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from agent.llm.sse import iter_sse_data
from agent.protocols.browser import BrowserSerializer
from agent.telephony.twilio import (
    ACCOUNT_SID,
    CALL_SID,
    MEDIA_FORMAT,
    STREAM_SID,
    StreamStart,
    TwilioMediaStreamSerializer,
    TwilioProtocolError,
    parse_start,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
base64_audio = st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode())


def sids(pattern) -> st.SearchStrategy[Any]:
    return st.from_regex(pattern, fullmatch=True) | json_values


twilio_events = st.fixed_dictionaries(
    {"event": st.sampled_from(["media", "mark", "dtmf", "stop", "start", "connected", "clear"]) | json_values},
    optional={
        "streamSid": sids(STREAM_SID),
        "media": st.fixed_dictionaries({}, optional={"payload": base64_audio | json_values, "track": json_values})
        | json_values,
        "mark": st.fixed_dictionaries({}, optional={"name": st.text(max_size=20) | json_values}) | json_values,
        "dtmf": st.fixed_dictionaries({}, optional={"digit": st.sampled_from(list("0123456789#*")) | json_values})
        | json_values,
        "stop": json_values,
    },
)
start_events = st.fixed_dictionaries(
    {
        "event": st.just("start") | json_values,
        "start": st.fixed_dictionaries(
            {},
            optional={
                "streamSid": sids(STREAM_SID),
                "callSid": sids(CALL_SID),
                "accountSid": sids(ACCOUNT_SID),
                "mediaFormat": st.just(MEDIA_FORMAT) | json_values,
                "customParameters": st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | json_values,
            },
        )
        | json_values,
    }
)
wire_text = st.text(max_size=300) | twilio_events.map(json.dumps) | st.just("[" * 5000)


async def run_twilio(messages: list[str | bytes]) -> list[Any]:
    async def ignore(*_: Any) -> None:
        return None

    start = StreamStart(stream_sid="MZ" + "0" * 32, call_sid="CA" + "0" * 32, account_sid="AC" + "0" * 32)
    serializer = TwilioMediaStreamSerializer(start, on_mark=ignore, on_stop=ignore)
    setup = FrameProcessorSetup(
        clock=SystemClock(), task_manager=TaskManager(), pipeline_worker=None, audio_in_sample_rate=16000
    )
    await serializer.setup(setup)
    return [await serializer.deserialize(m) for m in messages]


@FUZZ
@given(st.lists(wire_text | st.binary(max_size=200), min_size=1, max_size=8))
def test_twilio_deserializer_never_raises(messages):
    frames = asyncio.run(run_twilio(messages))
    assert all(f is None or isinstance(f, InputAudioRawFrame | InputDTMFFrame) for f in frames)


@FUZZ
@given(start_events | twilio_events | st.dictionaries(st.text(max_size=8), json_values))
def test_twilio_start_is_parsed_or_refused_with_a_protocol_error(event):
    try:
        start = parse_start(event)
    except TwilioProtocolError:
        return
    assert CALL_SID.fullmatch(start.call_sid) and STREAM_SID.fullmatch(start.stream_sid)
    assert all(isinstance(v, str) for v in start.custom_parameters.values())


async def run_browser(messages: list[str | bytes]) -> tuple[list[Any], list[dict]]:
    events: list[dict] = []

    async def on_event(event: dict) -> None:
        events.append(event)

    serializer = BrowserSerializer(on_event)
    return [await serializer.deserialize(m) for m in messages], events


browser_events = st.fixed_dictionaries({"type": json_values | st.sampled_from(["playout_started", "x"])}).map(
    json.dumps
)


@FUZZ
@given(st.lists(st.binary(max_size=2000) | st.text(max_size=200) | browser_events | json_values.map(json.dumps)))
def test_browser_deserializer_never_raises(messages):
    frames, events = asyncio.run(run_browser(messages))
    assert all(f is None or isinstance(f, InputAudioRawFrame) for f in frames)
    assert all(isinstance(e.get("type"), str) for e in events)


def test_browser_deserializer_drops_json_nested_too_deep():
    frames, events = asyncio.run(run_browser(["[" * 60_000, '{"type": ' + "[" * 60_000]))
    assert frames == [None, None] and events == []


async def sse_payloads(lines: list[str]) -> list[str]:
    async def body():
        for line in lines:
            yield line

    return [payload async for payload in iter_sse_data(body())]


sse_lines = st.lists(
    st.text(max_size=40)
    | st.sampled_from(["", ":", ": keep-alive", "data: [DONE]", "data:", "event: x", "\r", "data: {}\r"])
    | st.text(max_size=30).map(lambda t: "data: " + t),
    max_size=30,
)


@FUZZ
@given(sse_lines)
def test_sse_parser_never_raises(lines):
    payloads = asyncio.run(sse_payloads(lines))
    assert all(isinstance(p, str) and p != "[DONE]" for p in payloads)


@FUZZ
@given(sse_lines, sse_lines)
def test_sse_parser_yields_nothing_after_done(before, after):
    before = [*before, ""]  # ends on an event boundary
    assert asyncio.run(sse_payloads([*before, "data: [DONE]", "", *after])) == asyncio.run(sse_payloads(before))
