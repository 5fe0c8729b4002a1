"""Property-based fuzzing (hypothesis) of what strangers and providers send us: each carrier's stream
deserializer (Twilio, Telnyx, Plivo) and `start` parser, Plivo's extraHeaders, the browser page's deserializer, and
the SSE parser of LLM streams. Whatever arrives, nothing raises out of them: input is either understood or
dropped."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import InputAudioRawFrame, InputDTMFFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from agent.llm.sse import iter_sse_data
from agent.protocols.browser import BrowserSerializer
from agent.telephony.gate import StreamOpening
from agent.telephony.plivo import stream as plivo
from agent.telephony.registry import CARRIERS
from agent.telephony.telnyx import stream as telnyx
from agent.telephony.tokens import GateRefused
from agent.telephony.twilio.stream import (
    ACCOUNT_SID,
    CALL_SID,
    MEDIA_FORMAT,
    STREAM_SID,
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


EVENT_NAMES = ["media", "mark", "dtmf", "stop", "start", "connected", "clear", "error", "playedStream", "clearedAudio"]
stream_events = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENT_NAMES) | json_values},
    optional={
        "streamSid": sids(STREAM_SID),
        "stream_id": json_values,
        "name": st.text(max_size=20) | json_values,
        "payload": json_values,
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
wire_text = st.text(max_size=300) | stream_events.map(json.dumps) | st.just("[" * 5000)


async def ignore(*_: Any) -> None:
    return None


async def run_carrier(
    carrier: str, messages: list[str | bytes], on_stop: Callable[[], Awaitable[None]] = ignore
) -> list[Any]:
    """Each message through the carrier's checked serializer, as its stream would deliver it."""
    opening = StreamOpening(carrier, "CA" + "0" * 32, "MZ" + "0" * 32, "AC" + "0" * 32, encoding="PCMA")
    serializer = CARRIERS[carrier].serializer(opening, on_mark=ignore, on_stop=on_stop)
    setup = FrameProcessorSetup(
        clock=SystemClock(), task_manager=TaskManager(), pipeline_worker=None, audio_in_sample_rate=16000
    )
    await serializer.setup(setup)
    return [await serializer.deserialize(m) for m in messages]


@pytest.mark.parametrize("carrier", list(CARRIERS))
@FUZZ
@given(messages=st.lists(wire_text | st.binary(max_size=200), min_size=1, max_size=8))
def test_each_carriers_deserializer_never_raises(carrier, messages):
    frames = asyncio.run(run_carrier(carrier, messages))
    assert all(f is None or isinstance(f, InputAudioRawFrame | InputDTMFFrame) for f in frames)


@pytest.mark.parametrize("carrier", list(CARRIERS))
def test_a_message_without_an_event_is_dropped_and_the_call_goes_on(carrier):
    """The probe ended live Plivo calls with `{}`, `{"event": null}` or a bare media object (Plivo has no stop
    event, so a missing one matched it). Every carrier drops them; only the carrier's own stop ends the stream."""
    stops: list[bool] = []

    async def stopped() -> None:
        stops.append(True)

    hostile = ["{}", '{"event": null}', '{"media": {"payload": "/w=="}}', '{"event": 7}', '{"event": ["stop"]}']
    assert asyncio.run(run_carrier(carrier, hostile, stopped)) == [None] * len(hostile) and not stops
    stop_event = CARRIERS[carrier].serializer.stop_event
    if stop_event is not None:
        asyncio.run(run_carrier(carrier, [json.dumps({"event": stop_event})], stopped))
        assert stops == [True]


telnyx_starts = st.fixed_dictionaries(
    {"event": st.just("start") | json_values},
    optional={
        "stream_id": sids(telnyx.UUID),
        "start": st.fixed_dictionaries(
            {},
            optional={
                "call_control_id": sids(telnyx.CALL_CONTROL_ID),
                "user_id": sids(telnyx.UUID),
                "media_format": st.fixed_dictionaries(
                    {"encoding": st.sampled_from(["PCMU", "PCMA", "audio/x-mulaw", "G722"]) | json_values,
                     "sample_rate": st.sampled_from([8000, 16000]) | json_values}
                ) | json_values,
                "custom_parameters": st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | json_values,
            },
        )
        | json_values,
    },
)  # fmt: skip
plivo_starts = st.fixed_dictionaries(
    {"event": st.just("start") | json_values},
    optional={
        "start": st.fixed_dictionaries(
            {},
            optional={
                "callId": sids(plivo.CALL_UUID),
                "streamId": sids(plivo.CALL_UUID),
                "accountId": sids(plivo.AUTH_ID),
                "mediaFormat": st.just(plivo.MEDIA_FORMAT) | json_values,
            },
        )
        | json_values,
        "extra_headers": st.text(max_size=80) | json_values,
    },
)


@FUZZ
@given(telnyx_starts | plivo_starts | st.dictionaries(st.text(max_size=8), json_values))
def test_telnyx_and_plivo_starts_are_parsed_or_refused(event):
    for parse, ids in ((telnyx.parse_start, telnyx.CALL_ID), (plivo.parse_start, plivo.CALL_UUID)):
        try:
            opening = parse(event)
        except GateRefused:
            continue
        assert ids.fullmatch(opening.call_id) and all(isinstance(v, str) for v in opening.parameters.values())


@FUZZ
@given(st.text(max_size=200) | json_values)
def test_plivo_extra_headers_are_parsed_or_skipped(text):
    headers = plivo.parse_extra_headers(text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())


@FUZZ
@given(start_events | stream_events | st.dictionaries(st.text(max_size=8), json_values))
def test_twilio_start_is_parsed_or_refused_with_a_protocol_error(event):
    try:
        start = parse_start(event)
    except TwilioProtocolError:
        return
    assert CALL_SID.fullmatch(start.call_id) and STREAM_SID.fullmatch(start.stream_id)
    assert all(isinstance(v, str) for v in start.parameters.values())


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
