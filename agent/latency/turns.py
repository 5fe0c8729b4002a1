"""Per-turn latency timeline: marks from the caller's true end of speech to the first bot audio, split into
consecutive stages, judged against the latency budget.

All times are `time.monotonic()` seconds. The stages are the differences between consecutive marks (each mark
clamped to be no earlier than the one before), so they add up to the voice-to-voice total.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

# (stage name, mark that ends it). Each stage starts at the previous stage's end; the first at `speech_end`.
STAGES: tuple[tuple[str, str], ...] = (
    ("vad_stop", "vad_stop"),  # silence until the VAD calls the speech over (its stop_secs plus its smoothing)
    ("stt", "transcript"),  # Whisper finishing the last utterance
    ("end_of_turn", "turn_end"),  # the rest of the end-of-turn wait
    ("llm_request", "llm_request"),  # context aggregation, request sent
    ("llm_ttft", "llm_first_token"),  # provider's time to first spoken token (reasoning included)
    ("first_clause", "first_clause"),  # LLM writing until the first speakable clause
    ("tts", "tts_first_audio"),  # TTS time to first audio
    ("output", "audio_out"),  # output queue and socket write
    ("playout", "playout"),  # client buffer until the sound starts (when the client reports it)
)

DEFAULT_ALLOCATIONS_MS: dict[str, float] = {
    "vad_stop": 220,
    "stt": 150,
    "end_of_turn": 60,
    "llm_request": 20,
    "llm_ttft": 200,
    "first_clause": 60,
    "tts": 60,
    "output": 20,
    "playout": 60,
}


@dataclass
class LatencyBudget:
    """How long a turn may take, in total and per stage; judges a finished turn."""

    total_ms: float = 800.0
    allocations_ms: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ALLOCATIONS_MS))

    @classmethod
    def from_settings(cls, total_ms: float, overrides: str) -> LatencyBudget:
        """`overrides` like "stt=150,llm_ttft=250" replaces those stages' default allocations."""
        allocations = dict(DEFAULT_ALLOCATIONS_MS)
        for item in filter(None, (part.strip() for part in overrides.split(","))):
            name, _, value = item.partition("=")
            if name.strip() not in allocations:
                raise ValueError(f"LATENCY_STAGE_BUDGETS_MS: unknown stage {name.strip()!r}")
            try:
                allocations[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"LATENCY_STAGE_BUDGETS_MS: {item!r} is not stage=milliseconds") from None
        return cls(total_ms=total_ms, allocations_ms=allocations)

    def judge(self, stages_ms: dict[str, float], total_ms: float) -> dict[str, Any]:
        overruns = [name for name, ms in stages_ms.items() if ms > self.allocations_ms.get(name, float("inf"))]
        return {"within_budget": total_ms <= self.total_ms, "budget_ms": self.total_ms, "overran": overruns}


@dataclass
class Turn:
    """One caller turn and the agent's answer to it."""

    index: int
    marks: dict[str, float] = field(default_factory=dict)
    user_text: str = ""
    bot_text: str = ""
    interrupted: bool = False
    closed: bool = False
    llm: dict[str, Any] = field(default_factory=dict)

    def mark(self, name: str, at: float, *, overwrite: bool = False) -> None:
        if overwrite or name not in self.marks:
            self.marks[name] = at

    @property
    def answered(self) -> bool:
        return "audio_out" in self.marks

    def voice_to_voice_ms(self, until: str = "audio_out") -> float | None:
        if "speech_end" not in self.marks or until not in self.marks:
            return None
        return (self.marks[until] - self.marks["speech_end"]) * 1000

    def stages_ms(self) -> dict[str, float]:
        start = self.marks.get("speech_end")
        if start is None:
            return {}
        stages: dict[str, float] = {}
        previous = start
        for name, mark in STAGES:
            if mark not in self.marks:
                continue
            at = max(self.marks[mark], previous)
            stages[name] = round((at - previous) * 1000, 1)
            previous = at
        return stages

    def report(self, budget: LatencyBudget) -> dict[str, Any]:
        total = self.voice_to_voice_ms()
        stages = self.stages_ms()
        heard = self.voice_to_voice_ms("playout")
        result: dict[str, Any] = {
            "turn": self.index,
            "user_text": self.user_text.strip(),
            "bot_text": self.bot_text.strip(),
            "voice_to_voice_ms": None if total is None else round(total, 1),
            "heard_ms": None if heard is None else round(heard, 1),
            "stages_ms": stages,
            "interrupted": self.interrupted,
        }
        if self.llm:
            result["llm"] = self.llm
        if total is not None:
            result["verdict"] = budget.judge(stages, heard if heard is not None else total)
        return result


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """Median, p95 (nearest rank) and max of a list of milliseconds."""
    if not values:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    ordered = sorted(values)

    def pct(p: float) -> float:
        k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return round(ordered[k], 1)

    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": pct(95),
        "max_ms": round(ordered[-1], 1),
    }
