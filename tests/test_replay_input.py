"""Bad replay input gets a clear error before any model is loaded, from the API and from the command line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bench.audio import write
from pipelines.replay import ReplayInputError, read_call_wav

pytestmark = pytest.mark.process


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not audio at all"), "not a WAV recording"),
        (lambda p: write(p, np.zeros(4410, np.int16), 44100), "44100 Hz; use 16000 Hz or 8000 Hz"),
        (lambda p: write(p, np.zeros(3200, np.int16), 16000, channels=2), "2 channels"),
        (lambda p: write(p, np.zeros(0, np.int16), 16000), "empty"),
    ],
)
def test_unusable_recordings_are_refused_clearly(tmp_path, make, message):
    path = tmp_path / "call.wav"
    make(path)
    with pytest.raises(ReplayInputError, match=message):
        read_call_wav(path)
    result = run_cli("replay", str(path))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_missing_file(tmp_path):
    result = run_cli("replay", str(tmp_path / "nope.wav"))
    assert result.returncode == 2 and "no such file" in result.stderr
