"""The httpx chat client against a real HTTP server on 127.0.0.1 speaking Cerebras' streaming wire format."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from agent.llm.client import ChatCompletionClient, ProviderError, StreamStats
from agent.llm.providers import cerebras_provider
from agent.settings import Settings
from bench.provider_sim import ProviderSim

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]


@pytest.fixture(scope="module")
def sim():
    server = ProviderSim(first_token_s=0.05).start()
    yield server
    server.stop()


@pytest.fixture
def reset(sim):
    sim.scenario = "ok"
    sim.requests.clear()
    return sim


def client_for(sim: ProviderSim, key: str = "test-key", model: str = "gpt-oss-120b", **kw) -> ChatCompletionClient:
    settings = Settings.load(
        None, cerebras_api_key=SecretStr(key), cerebras_base_url=sim.base_url, cerebras_model=model
    )
    return ChatCompletionClient(cerebras_provider(settings), **kw)


async def collect(client: ChatCompletionClient, stats: StreamStats | None = None) -> tuple[str, str]:
    content = reasoning = ""
    async for chunk in client.stream(MESSAGES, stats):
        content += chunk.content
        reasoning += chunk.reasoning
    return content, reasoning


async def test_streams_content_apart_from_reasoning_with_usage_and_time_info(reset):
    client = client_for(reset)
    stats = StreamStats()
    content, reasoning = await collect(client, stats)
    await client.aclose()
    assert content == reset.answer
    assert reasoning.startswith("thinking0") and "thinking" not in content
    assert stats.usage and stats.usage["completion_tokens"] > 0
    assert stats.time_info and stats.time_info["total_time"] > 0
    assert stats.first_token_s is not None and stats.first_content_s >= stats.first_token_s
    body = reset.requests[-1]["body"]
    assert body["stream"] is True and body["reasoning_effort"] == "low"
    assert "max_completion_tokens" in body and "max_tokens" not in body


async def test_connect_warms_the_connection_that_the_first_turn_reuses(reset):
    client = client_for(reset)
    await client.connect()
    await collect(client)
    await collect(client)
    await client.aclose()
    ports = {r["client"].port for r in reset.requests}
    assert len(ports) == 1, ports  # one TCP connection, opened by connect(), reused by every turn


async def test_unknown_model_is_a_clear_start_up_error(reset):
    client = client_for(reset, model="gpt-9000")
    with pytest.raises(ProviderError, match="unknown model 'gpt-9000'.*gpt-oss-120b"):
        await client.connect()
    await client.aclose()


@pytest.mark.parametrize(
    ("scenario", "status", "text"),
    [("401", 401, "Wrong API Key"), ("429", 429, "limit exceeded"), ("503", 503, "high traffic")],
)
async def test_http_errors_are_clear_and_never_show_the_key(reset, scenario, status, text):
    reset.scenario = scenario
    client = client_for(reset)
    with pytest.raises(ProviderError) as failure:
        await collect(client)
    await client.aclose()
    assert failure.value.status == status and text in str(failure.value)
    assert failure.value.retryable == (status != 401)
    assert "test-key" not in str(failure.value) and "test-key" not in repr(client.provider)


async def test_wrong_key_at_connect_is_reported_without_the_key(reset):
    client = client_for(reset, key="sk-secret-123")
    with pytest.raises(ProviderError) as failure:
        await client.connect()
    await client.aclose()
    assert failure.value.status == 401 and "sk-secret-123" not in str(failure.value)


async def test_stream_cut_mid_answer_raises(reset):
    reset.scenario = "cut"
    client = client_for(reset)
    with pytest.raises(ProviderError, match="stream ended before the answer was finished"):
        await collect(client)
    await client.aclose()


async def test_error_event_inside_the_stream_raises(reset):
    reset.scenario = "error_event"
    client = client_for(reset)
    with pytest.raises(ProviderError, match="Internal server error"):
        await collect(client)
    await client.aclose()


async def test_first_token_deadline(reset):
    reset.scenario = "stall"
    client = client_for(reset, first_token_timeout_s=0.5)
    with pytest.raises(ProviderError, match="no first token after 0.5 s"):
        await collect(client)
    await client.aclose()


async def test_unreachable_provider(reset):
    settings = Settings.load(None, cerebras_api_key=SecretStr("k"), cerebras_base_url="http://127.0.0.1:9/v1")
    client = ChatCompletionClient(cerebras_provider(settings))
    with pytest.raises(ProviderError, match="cannot reach"):
        await client.connect()
    await client.aclose()
