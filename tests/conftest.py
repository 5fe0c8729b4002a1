"""Shared, session-scoped heavy parts: the speech models and a runtime on the embedded local LLM."""

from __future__ import annotations

import pytest

from agent.runtime import AgentRuntime, SpeechModels
from agent.settings import Settings


def local_settings(**overrides) -> Settings:
    """Local models; one-sentence answers keep the real-time replays short."""
    return Settings.load(None, **{"llm_provider": "local", "max_spoken_sentences": 1, **overrides})


@pytest.fixture(scope="session")
def speech() -> SpeechModels:
    return SpeechModels.load(local_settings())


@pytest.fixture(scope="session")
async def local_runtime(speech: SpeechModels):
    async with AgentRuntime.start(local_settings(), speech=speech) as runtime:
        yield runtime
