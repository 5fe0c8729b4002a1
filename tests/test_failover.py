"""The provider chain reads the provider's signals: real clients against simulators speaking Cerebras' and Groq's
wire formats, failures as they send them, and a clock the test moves."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from agent.llm.client import ChatCompletionClient, ProviderError
from agent.llm.failover import AUTH_REST_S, ProviderChain
from agent.llm.providers import provider_for
from agent.llm.simulator import ProviderSim
from agent.server.metrics import TurnMetrics, read_providers
from agent.settings import Settings

MESSAGES = [{"role": "user", "content": "Hello?"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def sims():
    cerebras = ProviderSim(wire="cerebras", first_token_s=0.01).start()
    groq = ProviderSim(wire="groq", first_token_s=0.01).start()
    yield cerebras, groq
    cerebras.stop(), groq.stop()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def chain(sims, clock):
    cerebras, groq = sims
    for sim in sims:
        sim.scenario = "ok"
    settings = Settings.load(
        None,
        llm_provider="cerebras",
        llm_fallbacks="groq",
        cerebras_api_key=SecretStr(cerebras.api_key),
        cerebras_base_url=cerebras.base_url,
        groq_api_key=SecretStr(groq.api_key),
        groq_base_url=groq.base_url,
    )
    built = ProviderChain([ChatCompletionClient(provider_for(settings, n)) for n in ("cerebras", "groq")], clock=clock)
    yield built
    for client in built.clients:
        await client.aclose()


async def failure_of(client: ChatCompletionClient) -> ProviderError:
    with pytest.raises(ProviderError) as failure:
        async for _ in client.stream(MESSAGES):
            pass
    return failure.value


def names(clients: list[ChatCompletionClient]) -> list[str]:
    return [c.provider.name for c in clients]


async def test_spent_token_quota_rests_the_provider_until_the_reset_its_headers_give(sims, chain, clock):
    cerebras_sim, _ = sims
    cerebras_sim.scenario, cerebras_sim.quota_reset_s = "quota", 7.5
    primary = chain.primary
    error = await failure_of(primary)
    assert error.kind == "quota" and error.code == "token_quota_exceeded" and error.retry_after_s == 7.5
    chain.failed(primary, error)
    assert names(chain.available()) == ["groq"]  # fails over at once, and stays away
    clock.now += 7.0
    assert names(chain.available()) == ["groq"] and chain.resting_s(primary) == pytest.approx(0.5)
    clock.now += 0.6
    assert names(chain.available()) == ["cerebras", "groq"]  # back after the reset


async def test_queue_exceeded_is_short_lived_overload_and_rests_no_one(sims, chain):
    cerebras_sim, _ = sims
    cerebras_sim.scenario = "overloaded"
    error = await failure_of(chain.primary)
    assert error.kind == "overloaded" and error.code == "queue_exceeded" and error.status == 429
    chain.failed(chain.primary, error)
    assert names(chain.available()) == ["cerebras", "groq"]  # the next turn asks the primary again


async def test_groq_rate_limit_rests_until_retry_after(sims, chain, clock):
    _, groq_sim = sims
    groq_sim.scenario, groq_sim.request_reset_s = "429", 2.0
    fallback = chain.clients[1]
    error = await failure_of(fallback)
    assert error.kind == "rate_limited" and error.retry_after_s == 2.0
    chain.failed(fallback, error)
    assert names(chain.available()) == ["cerebras"]
    clock.now += 2.1
    assert names(chain.available()) == ["cerebras", "groq"]


async def test_a_key_rejected_mid_run_rests_long_and_an_answer_ends_a_rest(sims, chain):
    cerebras_sim, _ = sims
    cerebras_sim.scenario = "401"
    error = await failure_of(chain.primary)
    chain.failed(chain.primary, error)
    assert error.kind == "auth" and chain.resting_s(chain.primary) == pytest.approx(AUTH_REST_S)
    chain.succeeded(chain.primary)
    assert names(chain.available()) == ["cerebras", "groq"]


async def test_when_every_provider_rests_the_one_back_soonest_is_still_offered(sims, chain):
    first = ProviderError("cerebras", "spent", 429, code="token_quota_exceeded", retry_after_s=30)
    second = ProviderError("groq", "spent", 429, code="rate_limit_exceeded", retry_after_s=5)
    chain.failed(chain.clients[0], first)
    chain.failed(chain.clients[1], second)
    assert names(chain.available()) == ["groq"]


async def test_metrics_show_rate_limits_rest_and_failures(sims, chain):
    cerebras_sim, _ = sims
    async for _ in chain.primary.stream(MESSAGES):  # a healthy answer: its headers fill the gauges
        pass
    cerebras_sim.scenario = "quota"
    chain.failed(chain.primary, await failure_of(chain.primary))
    metrics = TurnMetrics()
    metrics.watch_providers(lambda: read_providers(chain))
    text = metrics.exposition().decode()
    assert 'voice_agent_llm_ratelimit_remaining{limit="tokens",provider="cerebras"} 0.0' in text
    assert 'voice_agent_llm_ratelimit_remaining{limit="requests",provider="cerebras"}' in text
    assert 'voice_agent_llm_ratelimit_reset_seconds{limit="tokens",provider="cerebras"} 7.' in text
    assert 'voice_agent_llm_provider_resting_seconds{provider="cerebras"} 7.5' in text
    assert 'voice_agent_llm_provider_resting_seconds{provider="groq"} 0.0' in text
    assert 'voice_agent_llm_provider_failures_total{kind="quota",provider="cerebras"} 1.0' in text
    assert cerebras_sim.api_key not in text


def test_a_chain_needs_a_provider():
    with pytest.raises(ValueError):
        ProviderChain([])
