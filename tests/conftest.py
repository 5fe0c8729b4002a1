"""Shared, session-scoped heavy parts (the speech models, a runtime on the embedded local LLM) and the lock that
lets a `timing` test run alone while the others run side by side."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime, SpeechModels
from agent.settings import Settings
from tests.parallel import SuiteLock

TEST_BOOKINGS = Path(tempfile.mkdtemp(prefix="voice-agent-tests-")) / "bookings.sqlite3"  # never in the checkout


SUITE_LOCK = SuiteLock.for_this_run()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Setup, call and teardown of each test under the suite lock: a `timing` test runs alone (tests/parallel.py)."""
    if SUITE_LOCK is None:
        return (yield)
    with SUITE_LOCK.held(alone=item.get_closest_marker("timing") is not None):
        return (yield)


def local_settings(**overrides) -> Settings:
    """Local models; one-sentence answers keep the real-time replays short. Admission by count: tests that place
    calls side by side must not be turned away because other jobs keep this machine's CPUs busy (the admission
    tests ask for ADMISSION=load)."""
    defaults = {
        "llm_provider": "local",
        "max_spoken_sentences": 1,
        "booking_db_path": str(TEST_BOOKINGS),
        "admission": "count",
    }
    return Settings.load(None, **{**defaults, **overrides})


def sim_settings(sim: ProviderSim, **overrides) -> Settings:
    """`local_settings` with the LLM at the provider simulator (Cerebras' wire format) and no acknowledgement: the
    answers come at the speed the simulator is set to."""
    defaults = {
        "llm_provider": "cerebras",
        "cerebras_api_key": SecretStr(sim.api_key),
        "cerebras_base_url": sim.base_url,
        "acknowledge_after_ms": 0,
    }
    return local_settings(**{**defaults, **overrides})


@pytest.fixture(scope="session")
def speech() -> SpeechModels:
    return SpeechModels.load(local_settings())


@pytest.fixture(scope="session")
async def local_runtime(speech: SpeechModels):
    async with AgentRuntime.start(local_settings(), speech=speech) as runtime:
        yield runtime
