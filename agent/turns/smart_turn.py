"""Smart Turn v3: does the caller's voice sound finished? One ONNX session per process, shared by every call.

pipecat ships the model (`smart-turn-v3.2-cpu.onnx`, 8.7 MB) in its wheel; its own analyzer opens a session per
instance, i.e. per call. Here the session is opened once and `probability()` is safe to call from any thread. The
features are Whisper's log-mel over the last 8 s of the turn, computed with pipecat's vendored implementation (a
private module: `tests/test_upgrade_guards.py` fails loudly if an upgrade moves it).
"""

from __future__ import annotations

import importlib.resources
import time

import numpy as np
import onnxruntime as ort
import soxr
from loguru import logger
from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

MODEL_RATE = 16000
WINDOW_S = 8


def model_path() -> str:
    return str(importlib.resources.files("pipecat.audio.turn.smart_turn.data") / "smart-turn-v3.2-cpu.onnx")


class SmartTurnModel:
    """The end-of-turn classifier: the probability that a stretch of speech is a finished turn."""

    def __init__(self, threads: int = 1) -> None:
        started = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(model_path(), sess_options=options)
        self.probability(np.zeros(MODEL_RATE, np.int16).tobytes(), MODEL_RATE)  # warm up
        logger.info(f"Smart Turn v3 loaded in {(time.perf_counter() - started) * 1000:.0f} ms")

    def probability(self, pcm: bytes, sample_rate: int) -> float:
        """Blocking (run it in a worker thread): P(finished turn) for the end of `pcm` (16-bit mono)."""
        audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
        if sample_rate != MODEL_RATE:
            audio = soxr.resample(audio, sample_rate, MODEL_RATE, quality="HQ")
        audio = audio[-WINDOW_S * MODEL_RATE :]
        audio = np.pad(audio, (WINDOW_S * MODEL_RATE - len(audio), 0))
        features = compute_whisper_log_mel_features(audio, do_normalize=True)[None].astype(np.float32)
        (logits,) = self._session.run(None, {"input_features": features})
        return float(np.asarray(logits).reshape(-1)[0])
