"""Prometheus metrics: per-stage and total latency histograms and a budget verdict counter for every turn, and
counters of the connections refused or cut for security (admission, access, input bounds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS_S = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)


class TurnMetrics:
    """The app's Prometheus registry and what it records."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage = Histogram(
            "voice_agent_stage_seconds",
            "Time spent in each stage of a turn, from the caller's end of speech to the first bot audio.",
            ["stage"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.total = Histogram(
            "voice_agent_voice_to_voice_seconds",
            "Caller's end of speech to the first bot audio leaving the server's socket.",
            ["channel"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.heard = Histogram(
            "voice_agent_heard_seconds",
            "Caller's end of speech to the client starting to play the answer (where the client reports it).",
            ["channel"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.turns = Counter(
            "voice_agent_turns_total",
            "Answered turns by budget verdict.",
            ["channel", "verdict"],
            registry=self.registry,
        )
        self.sessions = Gauge("voice_agent_active_sessions", "Calls in progress.", ["channel"], registry=self.registry)
        self.refused = Counter(
            "voice_agent_refused_total",
            "Requests and sockets refused before a call started (bad signature, token, SID, access...).",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.disconnected = Counter(
            "voice_agent_input_disconnects_total",
            "Calls cut because the client broke the input bounds (flood, idle).",
            ["channel", "reason"],
            registry=self.registry,
        )

    def refusal_counter(self, channel: str) -> Callable[[str], None]:
        return lambda reason: self.refused.labels(channel, reason).inc()

    def disconnect_counter(self, channel: str) -> Callable[[str], None]:
        return lambda reason: self.disconnected.labels(channel, reason).inc()

    def record(self, channel: str, event: str, report: dict[str, Any]) -> None:
        """A turn's latency when it is answered, and its heard time when the client reports playout."""
        if event == "heard" and report.get("heard_ms") is not None:
            self.heard.labels(channel).observe(report["heard_ms"] / 1000)
            self.stage.labels("playout").observe(report["stages_ms"].get("playout", 0.0) / 1000)
            return
        if event != "answered" or report.get("voice_to_voice_ms") is None:
            return
        self.total.labels(channel).observe(report["voice_to_voice_ms"] / 1000)
        for stage, ms in report["stages_ms"].items():
            self.stage.labels(stage).observe(ms / 1000)
        verdict = "within" if report["verdict"]["within_budget"] else "over"
        self.turns.labels(channel, verdict).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
