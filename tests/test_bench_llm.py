"""`voice-agent bench-llm --offline`: the real command, run from outside the checkout (only the installed package
is needed: the simulator ships in it), against simulators at each platform's published speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[1]


def test_bench_llm_offline_times_every_platform_and_predicts_voice_to_voice(tmp_path):
    report_path = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--env-file", "", "bench-llm", "--offline", "--prompts", "4",
         "--stt-ms", "130", "--tts-ms", "25", "--json", str(report_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| cerebras | gpt-oss-120b | 4/4 |" in done.stdout and "predicted voice-to-voice" in done.stdout
    report = json.loads(report_path.read_text())
    by_name = {p["provider"]: p for p in report["providers"]}
    assert list(by_name) == ["cerebras", "sambanova", "groq", "openai"]
    for summary in by_name.values():
        assert summary["answered"] == 4 and not summary["errors"]
        assert 200 <= summary["first_token_ms"]["p50"] <= summary["first_clause_ms"]["p50"] < 1000
    # the simulated platforms keep their order of speed: Cerebras writes fastest, the H100 server slowest
    assert by_name["cerebras"]["tokens_per_s"]["p50"] > by_name["sambanova"]["tokens_per_s"]["p50"]
    assert by_name["groq"]["tokens_per_s"]["p50"] > by_name["openai"]["tokens_per_s"]["p50"]
    what_if = {row["platform"]: row for row in report["what_if"]}
    assert what_if["Cerebras"]["first_clause_ms"] < what_if["NVIDIA H100 server"]["first_clause_ms"]
    assert report["stages_ms"]["stt"] == 130 and report["stages_ms"]["source"] == "given"
    vad_stop = report["stages_ms"]["vad_stop"]
    for row in what_if.values():  # vad_stop + stt + max(rest, first token) + clause + tts
        assert row["voice_to_voice_ms"] >= vad_stop + 130 + row["first_token_ms"] + 25
