"""What this project relies on inside pipecat beyond its documented surface. If an upgrade moves any of it, these
fail with a message naming the part of the agent to revisit, instead of the agent breaking quietly."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from pipecat.frames.frames import LLMContextFrame
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator
from pipecat.services.llm_service import LLMService
from pipecat.services.tts_service import TTSService
from pipecat.turns.user_stop import BaseUserTurnStopStrategy

from agent.turns.smart_turn import model_path


def test_smart_turn_features_and_model_are_where_agent_turns_smart_turn_expects_them():
    from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

    features = compute_whisper_log_mel_features(np.zeros(8 * 16000, np.float32), do_normalize=True)
    assert features.shape == (80, 800), "agent/turns/smart_turn.py: Smart Turn's input features changed shape"
    assert model_path().endswith("smart-turn-v3.2-cpu.onnx")


def test_speculation_api_used_by_the_end_of_turn_strategy():
    for method in ("trigger_user_turn_inference_triggered", "trigger_user_turn_finalized",
                   "trigger_user_turn_speculation_cancelled", "trigger_user_turn_stopped"):  # fmt: skip
        assert hasattr(BaseUserTurnStopStrategy, method), f"agent/turns/end_of_turn.py: {method} is gone"
    parameters = inspect.signature(BaseUserTurnStopStrategy.trigger_user_turn_finalized).parameters
    assert "confirms_speculation" in parameters, "agent/turns/end_of_turn.py: speculation confirmation changed"
    assert "speculation" in LLMContextFrame.__dataclass_fields__, "agent/llm/service.py: speculative frames changed"


def test_llm_service_gates_what_it_pushes():
    source = inspect.getsource(LLMService.push_frame)
    assert "_speculation_gate" in source, "agent/llm/service.py relies on LLMService.push_frame holding speculation"


@pytest.mark.parametrize("name", ["_stream_audio_frames_from_iterator", "add_word_timestamps"])
def test_tts_helpers_used_by_the_local_voice(name):
    assert callable(getattr(TTSService, name, None)), f"agent/speech/tts.py: TTSService.{name} is gone"
    source = inspect.getsource(TTSService.process_frame)
    assert "AggregatedTextFrame" in source, "agent/speech/clauses.py: the TTS no longer speaks aggregated text as is"


def test_user_aggregator_ignores_empty_transcripts():
    # The STT sends one transcript per VAD segment, possibly empty; the aggregator must not append those.
    assert "if not text.strip()" in inspect.getsource(LLMUserAggregator._handle_transcription)
