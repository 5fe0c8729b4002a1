"""The httpx chat client's connection handling against a real HTTP server on 127.0.0.1 speaking Cerebras' wire
format: one warm pooled connection, model check, first-token deadline, unreachable servers. (The wire format of
every platform is checked in test_provider_conformance.py.)"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from agent.llm.client import ChatCompletionClient, ProviderError, StreamStats
from agent.llm.providers import provider_for
from agent.llm.simulator import ProviderSim
from agent.settings import Settings

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
    return ChatCompletionClient(provider_for(settings, "cerebras"), **kw)


async def collect(client: ChatCompletionClient) -> str:
    return "".join([chunk.content async for chunk in client.stream(MESSAGES)])


async def test_gpt_oss_gets_a_low_reasoning_effort_and_time_info_is_kept(reset):
    client = client_for(reset)
    stats = StreamStats()
    async for _ in client.stream(MESSAGES, stats):
        pass
    await client.aclose()
    assert reset.requests[-1]["body"]["reasoning_effort"] == "low"
    assert stats.time_info and stats.time_info["total_time"] > 0


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
    with pytest.raises(ProviderError, match="unknown model 'gpt-9000'.*gpt-oss-120b") as failure:
        await client.connect()
    await client.aclose()
    assert failure.value.kind == "bad_request"


async def test_wrong_key_at_connect_is_reported_without_the_key(reset):
    client = client_for(reset, key="sk-secret-123")
    with pytest.raises(ProviderError) as failure:
        await client.connect()
    await client.aclose()
    assert failure.value.status == 401 and "sk-secret-123" not in str(failure.value)


async def test_first_token_deadline(reset):
    reset.scenario = "stall"
    client = client_for(reset, first_token_timeout_s=0.5)
    with pytest.raises(ProviderError, match="no first token after 0.5 s") as failure:
        await collect(client)
    await client.aclose()
    assert failure.value.kind == "timeout"


async def test_unreachable_provider(reset):
    settings = Settings.load(None, cerebras_api_key=SecretStr("k"), cerebras_base_url="http://127.0.0.1:9/v1")
    client = ChatCompletionClient(provider_for(settings, "cerebras"))
    with pytest.raises(ProviderError, match="cannot reach") as failure:
        await client.connect()
    await client.aclose()
    assert failure.value.kind == "network"
