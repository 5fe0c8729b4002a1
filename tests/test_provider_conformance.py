"""One conformance suite, run against each provider's wire format: the client against the simulator (a real HTTP
server on 127.0.0.1) speaking Cerebras', Groq's, SambaNova's and a generic OpenAI server's documented format.

Stream shape, usage and server timings, rate-limit headers, 401/429/quota/overload/503 with the documented bodies,
a cut stream and an error event, tool-call deltas split across chunks, the parameters each platform rejects, and
byte-stable request prefixes with the cached prompt tokens the provider reports."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from pydantic import SecretStr

from agent.llm.client import ChatCompletionClient, ProviderError, StreamStats
from agent.llm.providers import LOCAL, PLATFORMS, Provider, provider_for
from agent.llm.sim_formats import WIRE_FORMATS
from agent.llm.simulator import ARGUMENT_PIECE_CHARS, ProviderSim
from agent.settings import Settings

WIRES = ["cerebras", "groq", "sambanova", "openai"]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]
BOOK = ("book_table", {"party_size": 2, "time": "19:30", "date": "2031-05-17", "name": "Ada Lovelace"})
TOOLS = [{"type": "function", "function": {"name": "book_table", "parameters": {"type": "object"}}}]

# What each failure must be classified as, per the provider's documented status and code.
ALWAYS = {"401": "auth", "overloaded": "overloaded", "503": "overloaded"}
EXPECTED_KINDS = {
    "cerebras": {**ALWAYS, "429": "rate_limited", "quota": "quota"},  # request_ / token_quota_exceeded
    "groq": {**ALWAYS, "429": "rate_limited", "quota": "rate_limited"},  # rate_limit_exceeded, with retry-after
    "sambanova": {**ALWAYS, "429": "quota", "quota": "quota"},  # insufficient_quota
    "openai": {**ALWAYS, "429": "rate_limited", "quota": "quota"},  # rate_limit_exceeded / insufficient_quota
}
SERVER_TIMINGS = {
    "cerebras": {"queue_s", "prompt_s", "completion_s", "total_s"},  # time_info
    "groq": {"queue_s", "prompt_s", "completion_s", "total_s"},  # x_groq.usage
    "sambanova": {"ttft_s", "total_s"},  # usage.time_to_first_token, total_latency
    "openai": set(),
}


@pytest.fixture(scope="module", params=WIRES)
def sim(request):
    server = ProviderSim(wire=request.param, first_token_s=0.02, api_key=f"{request.param}-key").start()
    yield server
    server.stop()


@pytest.fixture
def reset(sim):
    sim.scenario, sim.tool_calls = "ok", []
    sim.requests.clear()
    return sim


def client_for(sim: ProviderSim, key: str | None = None, **kw) -> ChatCompletionClient:
    name = sim.wire
    prefix = PLATFORMS[name].env_prefix.lower()
    settings = Settings.load(
        None,
        llm_provider=name,
        **{
            f"{prefix}_api_key": SecretStr(key or sim.api_key),
            f"{prefix}_base_url": sim.base_url,
            f"{prefix}_model": sim.models[0],
        },
    )
    return ChatCompletionClient(provider_for(settings, name), **kw)


async def collect(client: ChatCompletionClient, stats: StreamStats | None = None, **kw) -> tuple[str, str, int]:
    content = reasoning = ""
    chunks = 0
    async for chunk in client.stream(MESSAGES, stats, **kw):
        content += chunk.content
        reasoning += chunk.reasoning
        chunks += 1
    return content, reasoning, chunks


async def test_stream_shape_usage_and_server_timings(reset):
    client = client_for(reset)
    await client.connect()
    stats = StreamStats()
    content, reasoning, _ = await collect(client, stats)
    await client.aclose()
    assert content == reset.answer
    assert reasoning.startswith("thinking0") and "thinking" not in content  # reasoning is never content
    assert stats.usage and stats.usage["completion_tokens"] > 0 and stats.usage["prompt_tokens"] > 0
    assert set(stats.timings) == SERVER_TIMINGS[reset.wire], stats.timings
    assert all(v >= 0 for v in stats.timings.values())
    assert stats.first_token_s is not None and stats.first_content_s >= stats.first_token_s
    body = reset.requests[-1]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "max_completion_tokens" in body and "max_tokens" not in body


async def test_rate_limit_headers_are_read(reset):
    client = client_for(reset)
    await collect(client)
    await client.aclose()
    limits = client.rate_limits
    assert limits.remaining_requests is not None and 0 < limits.remaining_requests <= reset.limit_requests
    assert limits.reset_requests_s is not None and limits.reset_requests_s > 0
    if reset.wire == "sambanova":  # SambaNova documents request limits only
        assert limits.remaining_tokens is None
    else:
        assert 0 < limits.remaining_tokens < reset.limit_tokens and limits.reset_tokens_s == pytest.approx(11.38)


@pytest.mark.parametrize("scenario", ["401", "429", "quota", "overloaded", "503"])
async def test_http_errors_are_classified_from_the_documented_body(reset, scenario):
    reset.scenario = scenario
    client = client_for(reset)
    with pytest.raises(ProviderError) as failure:
        await collect(client)
    await client.aclose()
    error = failure.value
    status, message, _, code, _ = WIRE_FORMATS[reset.wire].errors[scenario]
    assert error.status == status and error.code == code
    assert error.kind == EXPECTED_KINDS[reset.wire][scenario]
    assert message.split("{")[0][:20] in str(error)
    assert reset.api_key not in str(error) and reset.api_key not in repr(client.provider)
    if reset.wire == "sambanova":
        assert error.request_id and error.request_id in str(error)  # SambaNova's trace id, for its support
    if scenario == "quota":  # when to come back, from the provider's own headers
        assert error.retry_after_s == pytest.approx(reset.quota_reset_s)
    if scenario == "401":
        assert not error.retryable


async def test_stream_cut_mid_answer_is_a_network_failure(reset):
    reset.scenario = "cut"
    client = client_for(reset)
    with pytest.raises(ProviderError, match="stream ended before the answer was finished") as failure:
        await collect(client)
    await client.aclose()
    assert failure.value.kind == "network"


async def test_error_event_inside_the_stream_is_a_server_failure(reset):
    reset.scenario = "error_event"
    client = client_for(reset)
    with pytest.raises(ProviderError) as failure:
        await collect(client)
    await client.aclose()
    assert failure.value.kind == "server"
    assert WIRE_FORMATS[reset.wire].errors["stream_error"][1] in str(failure.value)


async def test_tool_call_deltas_split_across_chunks_are_assembled(reset):
    reset.tool_calls = [BOOK, ("current_time", {})]
    client = client_for(reset)
    stats = StreamStats()
    _, _, chunks = await collect(client, stats, tools=TOOLS)
    await client.aclose()
    arguments = json.dumps(BOOK[1])
    assert chunks >= math.ceil(len(arguments) / ARGUMENT_PIECE_CHARS) + 2  # the arguments came in many pieces
    first, second = stats.tool_calls
    assert first.name == "book_table" and first.parsed_arguments() == BOOK[1] and first.id.startswith("call_")
    assert second.name == "current_time" and second.parsed_arguments() == {} and second.id != first.id
    assert reset.requests[-1]["body"]["tools"] == TOOLS


async def test_rejected_parameters_get_a_400_and_the_client_never_sends_them(reset):
    rejected = sorted(WIRE_FORMATS[reset.wire].rejected_params)
    assert rejected == sorted(PLATFORMS[reset.wire].rejected_params)  # the declaration matches the documented list
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {reset.api_key}"}) as http:
        for param in rejected:  # the simulator is strict, as the platform is
            body = {"model": reset.models[0], "messages": MESSAGES, "stream": True, param: 0}
            response = await http.post(f"{reset.base_url}/chat/completions", json=body)
            assert response.status_code == 400 and param in response.text
    client = client_for(reset)
    content, _, _ = await collect(client, **{p: 0 for p in rejected}, top_p=0.9)
    await client.aclose()
    sent = reset.requests[-1]["body"]
    assert content == reset.answer and not set(rejected) & set(sent) and sent["top_p"] == 0.9


async def test_tools_never_go_to_a_platform_without_tool_calling(reset):
    provider = client_for(reset).provider
    local_like = ChatCompletionClient(Provider(**{**provider.__dict__, "platform": LOCAL}))
    assert not local_like.provider.supports_tools
    body = local_like.request_body(MESSAGES, tools=TOOLS)
    await local_like.aclose()
    assert "tools" not in body and "max_tokens" in body and "stream_options" not in body


async def test_request_prefix_is_byte_stable_and_cached_tokens_are_reported(reset):
    client = client_for(reset)
    first, second = StreamStats(), StreamStats()
    async for _ in client.stream(MESSAGES, first):
        pass
    follow_up = [*MESSAGES, {"role": "assistant", "content": reset.answer}, {"role": "user", "content": "And?"}]
    async for _ in client.stream(follow_up, second):
        pass
    await client.aclose()
    raw_first, raw_second = (r["raw"] for r in reset.requests[-2:])
    shared = raw_first[: raw_first.index(b'"Hello?"}') + len(b'"Hello?"}')]
    assert raw_second.startswith(shared)  # system prompt and history: the same bytes, so prefix caches hit
    assert first.cached_tokens == 0 and second.cached_tokens and second.cached_tokens > 0
