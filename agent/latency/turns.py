"""One caller turn as the latency budget sees it: marks from the caller's true end of speech to the first sound of
the *answer*, an outcome, and a verdict.

The answer is the LLM's words. An acknowledgement ("Let me think."), an apology or a goodbye is not an answer: its
first audio is recorded apart (`filler_ms`) and never stops the clock. Every turn ends with one outcome:

- `answered`: the answer's audio reached the caller (it may have been cut later by a barge-in);
- `interrupted`: the caller spoke again before any answer was heard;
- `error`: the LLM failed and the caller got the apology instead;
- `no_answer`: the turn ended (the call closed, or nothing came) without an answer;
- `transferred`: the turn ended with the call put through to a person (the transfer_call tool).

A caller's back-channel ("yeah", "mm-hm") or a noise over an answer is not a turn of its own: the answer went on,
and its turn counts it (`backchannels`), neither cut nor a false start.

Only an answered turn can be within budget, and never a false start. A `false_start` is an answer (or filler) cut
by the caller going on within `FALSE_START_S` of its first audio: the agent spoke into a pause in the middle of the
caller's turn.

All times are `time.monotonic()` seconds. Stages are the gaps between consecutive marks, each mark clamped to be no
earlier than the one before, so they always add up to the answer time (the stage table shows where it went).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["answered", "interrupted", "error", "no_answer", "transferred"]
OUTCOMES: tuple[Outcome, ...] = ("answered", "interrupted", "error", "no_answer", "transferred")
FALSE_START_S = 1.5

# (stage name, mark that ends it). Each stage starts at the previous stage's end; the first at `speech_end`.
STAGES: tuple[tuple[str, str], ...] = (
    ("vad_stop", "vad_stop"),  # silence until the VAD calls the speech over
    ("stt", "transcript"),  # the transcript of the last words, after the VAD stop
    ("end_of_turn", "turn_end"),  # the rest of the end-of-turn wait, until the turn is confirmed
    ("llm_request", "llm_request"),  # the request going out (0 when it was sent speculatively, before the turn end)
    ("llm_ttft", "llm_first_token"),  # waiting for the first spoken token (what speculation did not hide)
    ("first_clause", "first_clause"),  # the LLM writing until the first speakable clause
    ("tts", "tts_first_audio"),  # TTS time to the first audio of the answer
    ("output", "answer_out"),  # output queue and socket write (behind an acknowledgement, if one played)
    ("playout", "playout"),  # client buffer until the sound starts (when the client reports it)
)

DEFAULT_ALLOCATIONS_MS: dict[str, float] = {
    "vad_stop": 100,
    "stt": 60,
    "end_of_turn": 60,
    "llm_request": 20,
    "llm_ttft": 250,
    "first_clause": 40,
    "tts": 40,
    "output": 30,
    "playout": 60,
}


@dataclass
class LatencyBudget:
    """How long the answer may take, in total and per stage; judges a finished turn."""

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

    def judge(
        self, outcome: Outcome, stages_ms: dict[str, float], answer_ms: float | None, *, false_start: bool = False
    ) -> dict[str, Any]:
        """Within budget only when the caller got an answer, got it in time, and had finished speaking: an answer
        that began in the caller's pause (a false start) is never a good turn, however fast it was."""
        overruns = [name for name, ms in stages_ms.items() if ms > self.allocations_ms.get(name, math.inf)]
        within = outcome == "answered" and not false_start and answer_ms is not None and answer_ms <= self.total_ms
        return {"within_budget": within, "false_start": false_start, "budget_ms": self.total_ms, "overran": overruns}


@dataclass
class Turn:
    """One caller turn and the agent's response to it."""

    index: int
    marks: dict[str, float] = field(default_factory=dict)
    user_text: str = ""
    bot_text: str = ""
    llm: dict[str, Any] = field(default_factory=dict)
    llm_requests: int = 0  # chat completions sent for this turn, speculative ones included
    error: str | None = None
    closed: bool = False
    cut: bool = False  # the caller spoke over the agent's audio
    false_start: bool = False
    held_ms: float | None = None  # the answer's first audio held while the caller seemed to start speaking
    backchannels: int = 0  # times the caller's "yeah" (or a noise) cut the answer off and it went on
    transferred: bool = False  # the turn ended with the call put through to a person

    def mark(self, name: str, at: float, *, overwrite: bool = False) -> None:
        if overwrite or name not in self.marks:
            self.marks[name] = at

    @property
    def answered(self) -> bool:
        return "answer_out" in self.marks

    @property
    def confirmed(self) -> bool:
        return "turn_end" in self.marks

    @property
    def outcome(self) -> Outcome:
        if self.transferred:
            return "transferred"
        if self.answered:
            return "answered"
        if self.error:
            return "error"
        if self.cut:
            return "interrupted"
        return "no_answer"

    def since_speech_end_ms(self, mark: str) -> float | None:
        if "speech_end" not in self.marks or mark not in self.marks:
            return None
        return (self.marks[mark] - self.marks["speech_end"]) * 1000

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
        answer = self.since_speech_end_ms("answer_out")
        heard = self.since_speech_end_ms("playout")
        filler = self.since_speech_end_ms("filler_out")
        stages = self.stages_ms()
        result: dict[str, Any] = {
            "turn": self.index,
            "outcome": self.outcome,
            "user_text": self.user_text.strip(),
            "bot_text": self.bot_text.strip(),
            "answer_ms": _round(answer),
            "heard_ms": _round(heard),
            "filler_ms": _round(filler),
            "stages_ms": stages,
            "llm_requests": self.llm_requests,
            "cut": self.cut,
            "false_start": self.false_start,
            "held_ms": self.held_ms,
            "backchannels": self.backchannels,
            "verdict": budget.judge(
                self.outcome, stages, heard if heard is not None else answer, false_start=self.false_start
            ),
        }
        if self.error:
            result["error"] = self.error
        if self.llm:
            result["llm"] = self.llm
        return result


def _round(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """Median, p95 (nearest rank) and max of a list of milliseconds."""
    if not values:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    return {
        "count": len(values),
        "p50_ms": round(statistics.median(values), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "max_ms": round(max(values), 1),
    }


def summarize_turns(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """A call's (or a benchmark's) turns: answer latency over answered turns, and how every turn ended."""
    answers = [r["heard_ms"] if r["heard_ms"] is not None else r["answer_ms"] for r in reports if r["answer_ms"]]
    return {
        **summarize(answers),
        "turns": len(reports),
        "outcomes": {o: sum(r["outcome"] == o for r in reports) for o in OUTCOMES},
        "within_budget": sum(r["verdict"]["within_budget"] for r in reports),
        "fillers": sum(r["filler_ms"] is not None for r in reports),
        "false_starts": sum(r["false_start"] for r in reports),
        "held_answers": sum(r.get("held_ms") is not None for r in reports),
        "backchannels": sum(r.get("backchannels", 0) for r in reports),
        "llm_requests": sum(r["llm_requests"] for r in reports),
    }
