"""Prometheus metrics: every turn's per-stage and total latency histograms and budget verdict, and the server's
capacity (live and reserved calls, how many it can take, whether it is draining, its memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agent.server.machine import tree_pss_bytes

if TYPE_CHECKING:
    from agent.server.admission import Admission

BUCKETS_S = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)


class TurnMetrics:
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

    def watch_capacity(self, admission: Admission) -> None:
        """Gauges read from `admission` at every scrape: what an autoscaler and a load balancer look at."""
        for channel in ("browser", "phone"):
            self.sessions.labels(channel).set_function(lambda c=channel: admission.active_on(c))
        gauges = {
            "voice_agent_active_calls": ("Calls in progress, all channels.", lambda: admission.active),
            "voice_agent_reserved_calls": (
                "Phone calls answered at the webhook whose stream has not started yet.",
                lambda: admission.reserved,
            ),
            "voice_agent_capacity_calls": (
                "Calls this server can hold at once now, by its workers and its measured load.",
                admission.capacity,
            ),
            "voice_agent_ready": ("1 while new calls are admitted, 0 when full or draining.", lambda: admission.ready),
            "voice_agent_draining": ("1 once a drain (SIGTERM) has started.", lambda: admission.draining),
            "voice_agent_cpu_busy_percent": ("The machine's CPU busy share, last seconds.", admission.cpu.busy_percent),
            "voice_agent_memory_pss_bytes": (
                "Memory (PSS) of this server: front, workers and the local LLM server.",
                tree_pss_bytes,
            ),
        }
        for name, (description, read) in gauges.items():
            Gauge(name, description, registry=self.registry).set_function(read)

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
