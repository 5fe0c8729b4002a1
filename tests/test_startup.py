"""Choosing providers from the settings, and starting up against providers that are down, overloaded, out of quota
or reject the key: simulators on 127.0.0.1, the real runtime, and the real `voice-agent` command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from loguru import logger
from pydantic import SecretStr

from agent.llm.providers import chain_names, primary_name, provider_for
from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from agent.settings import Settings, SettingsError
from bench.audio import build_call, voiced_spans
from bench.server_process import free_port
from pipelines.replay import replay_call
from tests.conftest import local_settings
from tests.llm_stage import answer_frames, spoken, stats_of

REPO = Path(__file__).resolve().parents[1]
CLOSED_PORT_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port


@pytest.fixture(scope="module")
def sims():
    cerebras = ProviderSim(wire="cerebras", first_token_s=0.02, answer="Cerebras answers.").start()
    groq = ProviderSim(wire="groq", first_token_s=0.02, answer="Groq answers.").start()
    yield cerebras, groq
    cerebras.stop(), groq.stop()


@pytest.fixture
def healthy(sims):
    for sim in sims:
        sim.scenario = "ok"
        sim.requests.clear()
    return sims


def chain_settings(cerebras: ProviderSim, groq: ProviderSim, **overrides) -> Settings:
    return local_settings(
        **{
            "llm_provider": "cerebras",
            "llm_fallbacks": "groq",
            "cerebras_api_key": SecretStr(cerebras.api_key),
            "cerebras_base_url": cerebras.base_url,
            "groq_api_key": SecretStr(groq.api_key),
            "groq_base_url": groq.base_url,
            "acknowledge_after_ms": 0,
            **overrides,
        }
    )


@pytest.fixture
def warnings():
    seen: list[str] = []
    sink = logger.add(lambda message: seen.append(message.record["message"]), level="WARNING")
    yield seen
    logger.remove(sink)


# -- choosing providers ------------------------------------------------------------------------------------------
def test_auto_takes_the_first_platform_with_a_key():
    assert primary_name(Settings.load(None)) == "local"
    assert primary_name(Settings.load(None, sambanova_api_key=SecretStr("s"))) == "sambanova"
    both = Settings.load(None, groq_api_key=SecretStr("g"), sambanova_api_key=SecretStr("s"))
    assert primary_name(both) == "groq"
    assert primary_name(Settings.load(None, llm_api_key=SecretStr("k"), llm_base_url="http://gpu:8000/v1")) == "openai"


def test_each_platform_has_its_defaults_and_its_variables():
    settings = Settings.load(
        None, groq_api_key=SecretStr("g"), sambanova_api_key=SecretStr("s"), llm_base_url="http://10.0.0.5:8000/v1"
    )
    groq = provider_for(settings, "groq")
    assert (groq.base_url, groq.model) == ("https://api.groq.com/openai/v1", "openai/gpt-oss-120b")
    assert provider_for(settings, "sambanova").base_url == "https://api.sambanova.ai/v1"
    openai = provider_for(settings, "openai")  # a self-hosted server may need no key
    assert openai.base_url == "http://10.0.0.5:8000/v1" and not openai.api_key.get_secret_value()
    with pytest.raises(SettingsError, match="CEREBRAS_API_KEY"):
        provider_for(settings, "cerebras")
    with pytest.raises(SettingsError, match="LLM_BASE_URL"):
        provider_for(Settings.load(None), "openai")


def test_fallbacks_are_a_list_of_provider_names():
    settings = Settings.load(None, llm_provider="groq", llm_fallbacks="sambanova, local,groq")
    assert chain_names(settings) == ["groq", "sambanova", "local"]  # the primary is not repeated
    with pytest.raises(SettingsError, match="LLM_FALLBACKS.*unknown provider 'grok'"):
        Settings.load(None, llm_fallbacks="grok")
    with pytest.raises(SettingsError, match="LLM_FALLBACKS.*twice"):
        Settings.load(None, llm_fallbacks="local,local")


@pytest.mark.parametrize("old", ["FALLBACK_BASE_URL", "FALLBACK_MODEL", "FALLBACK_API_KEY"])
def test_the_old_single_fallback_variables_are_refused(monkeypatch, old):
    monkeypatch.setenv(old, "http://backup/v1")
    with pytest.raises(SettingsError, match=f"{old} is no longer read: set LLM_FALLBACKS"):
        Settings.load(None)


# -- start-up ----------------------------------------------------------------------------------------------------
# Which provider answers is the LLM stage's decision: the turns are asked at that stage (run_test), on the runtime
# that started against the failing primary. What a caller hears when nothing answers is the whole call below.
@pytest.mark.parametrize("scenario", ["503", "429", "overloaded"])
async def test_primary_failing_at_start_up_still_serves_and_each_turn_fails_over(healthy, speech, warnings, scenario):
    cerebras, groq = healthy
    cerebras.scenario = scenario
    async with AgentRuntime.start(chain_settings(cerebras, groq), speech=speech) as runtime:
        assert [c.provider.name for c in runtime.chain.clients] == ["cerebras", "groq"]
        assert runtime.llm is runtime.chain.primary
        assert any("primary provider cerebras" in w and "serving anyway" in w for w in warnings), warnings
        down = await answer_frames(runtime, "What is ten of clubs?", "And seven of clubs?")
    assert spoken(down) == "Groq answers." * 2, down
    assert [(s.provider, s.error) for s in stats_of(down)] == [("groq", None), ("groq", None)]


@pytest.mark.slow
async def test_a_cut_connection_at_start_up_still_serves_and_apologises(speech, warnings, tmp_path):
    settings = local_settings(
        llm_provider="cerebras",
        cerebras_api_key=SecretStr("k"),
        cerebras_base_url=CLOSED_PORT_URL,
        acknowledge_after_ms=0,
    )
    call = build_call(tmp_path / "q.wav", [0.3, "ten_of_clubs.wav", 1.0])
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        assert any("unavailable at start-up" in w for w in warnings)
        result = await replay_call(runtime, call)
    [turn] = result.turns
    assert turn["outcome"] == "error" and "ConnectError" in turn["error"], turn
    assert turn["filler_ms"] is not None  # the apology was spoken: the caller is not left in silence
    assert voiced_spans(result.reply_audio, result.reply_sample_rate)


async def test_spent_quota_at_start_up_rests_the_primary(healthy, speech):
    cerebras, groq = healthy
    cerebras.scenario, cerebras.quota_reset_s = "quota", 30.0
    async with AgentRuntime.start(chain_settings(cerebras, groq), speech=speech) as runtime:
        assert [c.provider.name for c in runtime.chain.available()] == ["groq"]
        assert runtime.chain.resting_s(runtime.llm) > 25


async def test_a_fallback_that_is_down_is_logged_and_skipped(healthy, speech, warnings):
    cerebras, groq = healthy
    settings = chain_settings(cerebras, groq, groq_base_url=CLOSED_PORT_URL)
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        assert runtime.provider.name == "cerebras"
        assert any("fallback groq" in w and "serving anyway" in w for w in warnings), warnings


@pytest.mark.parametrize(("which", "variable"), [("cerebras", "CEREBRAS_API_KEY"), ("groq", "GROQ_API_KEY")])
async def test_a_rejected_key_stops_start_up_naming_the_variable(healthy, speech, which, variable):
    cerebras, groq = healthy
    settings = chain_settings(cerebras, groq, **{f"{which}_api_key": SecretStr("sk-wrong-123")})
    with pytest.raises(SettingsError, match=f"{variable} was rejected by {which}") as failure:
        async with AgentRuntime.start(settings, speech=speech):
            pass
    assert "sk-wrong-123" not in str(failure.value)


async def test_an_unknown_model_stops_start_up_naming_the_variable(healthy, speech):
    cerebras, groq = healthy
    with pytest.raises(SettingsError, match="CEREBRAS_MODEL: .*unknown model 'gpt-9000'"):
        async with AgentRuntime.start(chain_settings(cerebras, groq, cerebras_model="gpt-9000"), speech=speech):
            pass


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["replay", "tests/fixtures/ten_of_clubs.wav"]])
@pytest.mark.process
def test_the_command_reports_a_rejected_key_in_one_line(healthy, command):
    cerebras, _ = healthy
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CEREBRAS_", "GROQ_", "SAMBANOVA_", "LLM_"))},
        "PYTHONPATH": str(REPO),
        "CEREBRAS_API_KEY": "sk-wrong-123",
        "CEREBRAS_BASE_URL": cerebras.base_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--env-file", "", *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("voice-agent:")]
    assert len(errors) == 1 and "CEREBRAS_API_KEY was rejected by cerebras" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "sk-wrong-123" not in done.stderr


@pytest.mark.process
@pytest.mark.slow
def test_serve_starts_and_says_so_when_the_primary_is_down(tmp_path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CEREBRAS_", "GROQ_", "SAMBANOVA_", "LLM_"))},
        "PYTHONPATH": str(REPO),
        "CEREBRAS_API_KEY": "sk-any",
        "CEREBRAS_BASE_URL": CLOSED_PORT_URL,
        "BOOKING_DB_PATH": str(tmp_path / "bookings.sqlite3"),
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "--env-file", "", "serve", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise AssertionError(log.read_text()[-3000:])
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert health["status"] == "ok" and health["provider"] == "cerebras"
    text = log.read_text()
    assert "primary provider cerebras" in text and "serving anyway" in text and "sk-any" not in text
