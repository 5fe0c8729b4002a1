"""Prometheus metrics of every turn: when the caller got the answer (and any filler before it), stage by stage, and
how each turn ended (`outcome`) against the budget (`verdict`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS_S = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)


class TurnMetrics:
    """The registry behind /metrics, fed with each turn's report as it progresses."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage = Histogram(
            "voice_agent_stage_seconds",
            "Time spent in each stage of a turn, from the caller's end of speech to the answer's first audio.",
            ["stage"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.answer = Histogram(
            "voice_agent_answer_seconds",
            "Caller's end of speech to the answer's first audio leaving the server (fillers excluded).",
            ["channel"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.heard = Histogram(
            "voice_agent_answer_heard_seconds",
            "Caller's end of speech to the client starting to play the answer (where the client reports it).",
            ["channel"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.filler = Histogram(
            "voice_agent_filler_seconds",
            "Caller's end of speech to the first audio of a filler (acknowledgement, apology), on turns that had one.",
            ["channel"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.turns = Counter(
            "voice_agent_turns_total",
            "Finished turns by outcome (answered, interrupted, error, no_answer) and budget verdict.",
            ["channel", "outcome", "verdict"],
            registry=self.registry,
        )
        self.false_starts = Counter(
            "voice_agent_false_starts_total",
            "Agent audio cut by the caller going on within 1.5 s: the agent spoke into a pause.",
            ["channel"],
            registry=self.registry,
        )
        self.llm_requests = Counter(
            "voice_agent_llm_requests_total",
            "Chat completion requests, speculative ones included (they count against provider rate limits).",
            ["channel"],
            registry=self.registry,
        )
        self.sessions = Gauge("voice_agent_active_sessions", "Calls in progress.", ["channel"], registry=self.registry)

    def record(self, channel: str, event: str, report: dict[str, Any]) -> None:
        """One turn event: "answered" (answer out), "heard" (client playout), "closed" (the turn is over)."""
        if event == "answered" and report["answer_ms"] is not None:
            self.answer.labels(channel).observe(report["answer_ms"] / 1000)
            for stage, ms in report["stages_ms"].items():
                self.stage.labels(stage).observe(ms / 1000)
        elif event == "heard" and report["heard_ms"] is not None:
            self.heard.labels(channel).observe(report["heard_ms"] / 1000)
            self.stage.labels("playout").observe(report["stages_ms"].get("playout", 0.0) / 1000)
        elif event == "closed":
            verdict = "within" if report["verdict"]["within_budget"] else "over"
            self.turns.labels(channel, report["outcome"], verdict).inc()
            self.llm_requests.labels(channel).inc(report["llm_requests"])
            if report["filler_ms"] is not None:
                self.filler.labels(channel).observe(report["filler_ms"] / 1000)
            if report["false_start"]:
                self.false_starts.labels(channel).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
