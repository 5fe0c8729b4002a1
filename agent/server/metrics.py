"""Prometheus metrics of every turn: when the caller got the answer (and any filler before it), stage by stage, and
how each turn ended (`outcome`) against the budget (`verdict`); each LLM provider's rate-limit headers (remaining
requests/tokens, time to reset), rest time and failures by kind; the connections refused or cut for security
(admission, access, input bounds); outbound calls; and the server's capacity (live and reserved calls, how many
it can take, whether it is draining, its memory)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.server.machine import tree_pss_bytes

if TYPE_CHECKING:
    from agent.llm.failover import ProviderChain
    from agent.server.admission import Admission

BUCKETS_S = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)


class TurnMetrics:
    """The registry behind /metrics, fed with each turn's report as it progresses; providers read at each scrape."""

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
            "Finished turns by outcome (answered, interrupted, error, no_answer, transferred) and budget verdict "
            "(within, over, false_start: answered into the caller's pause).",
            ["channel", "outcome", "verdict"],
            registry=self.registry,
        )
        self.false_starts = Counter(
            "voice_agent_false_starts_total",
            "Agent audio cut by the caller going on within 1.5 s: the agent spoke into a pause.",
            ["channel"],
            registry=self.registry,
        )
        self.backchannels = Counter(
            "voice_agent_backchannels_total",
            'A caller\'s back-channel ("yeah", "mm-hm") or a noise over an answer: it stopped the agent, and the '
            "answer went on instead of being dropped.",
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
        self.refused = Counter(
            "voice_agent_refused_total",
            "Requests and sockets refused before a call started (bad signature, token, SID, access...).",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.dials = Counter(
            "voice_agent_dials_total",
            "Outbound call requests by carrier and result (placed, or why not: dial_allowlist, busy, carrier_error).",
            ["carrier", "result"],
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

    def watch_providers(self, readings_of: Callable[[], list[ProviderReading]]) -> None:
        """Expose the providers' state that `readings_of` returns (called at each scrape; empty before start-up)."""
        self.registry.register(ProviderCollector(readings_of))

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
        """One turn event: "answered" (answer out), "heard" (client playout), "closed" (the turn is over)."""
        if event == "answered" and report["answer_ms"] is not None:
            self.answer.labels(channel).observe(report["answer_ms"] / 1000)
            for stage, ms in report["stages_ms"].items():
                self.stage.labels(stage).observe(ms / 1000)
        elif event == "heard" and report["heard_ms"] is not None:
            self.heard.labels(channel).observe(report["heard_ms"] / 1000)
            self.stage.labels("playout").observe(report["stages_ms"].get("playout", 0.0) / 1000)
        elif event == "closed":
            verdict = (
                "within" if report["verdict"]["within_budget"] else "false_start" if report["false_start"] else "over"
            )
            self.turns.labels(channel, report["outcome"], verdict).inc()
            self.llm_requests.labels(channel).inc(report["llm_requests"])
            if report["filler_ms"] is not None:
                self.filler.labels(channel).observe(report["filler_ms"] / 1000)
            if report["false_start"]:
                self.false_starts.labels(channel).inc()
            self.backchannels.labels(channel).inc(report.get("backchannels", 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class ProviderReading:
    """One LLM provider's state as /metrics shows it: what its last rate-limit headers said is left (by limit:
    requests, tokens) and how long until each limit resets, how long it rests, its failures by kind. Read from this
    process's chain, or sent by a worker process (plain data: it goes over the worker's control line as JSON)."""

    name: str
    remaining: dict[str, float] = field(default_factory=dict)
    reset_s: dict[str, float] = field(default_factory=dict)
    resting_s: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)


def read_providers(chain: ProviderChain) -> list[ProviderReading]:
    """The chain's providers as they are now, in chain order."""
    readings = []
    for client, status in zip(chain.clients, chain.status(), strict=True):
        limits = client.rate_limits
        reading = ProviderReading(status.name, resting_s=status.resting_s, failures=dict(status.failures))
        for limit, left, reset_s in (
            ("requests", limits.remaining_requests, limits.reset_requests_s),
            ("tokens", limits.remaining_tokens, limits.reset_tokens_s),
        ):
            if left is not None:
                reading.remaining[limit] = left
            if (reset_in := limits.reset_in_s(reset_s)) is not None:
                reading.reset_s[limit] = reset_in
        readings.append(reading)
    return readings


def combine_readings(snapshots: list[tuple[float, list[ProviderReading]]], now: float) -> list[ProviderReading]:
    """Several processes' readings of the same providers as one. Each snapshot is `(taken_at, readings)`, taken at
    a `time.monotonic()` (one clock for every process on a machine): the newest rate-limit headers win, with their
    resets counted down to `now`; a provider rests as long as its longest rest; failures add up."""
    combined: dict[str, ProviderReading] = {}
    for taken_at, readings in sorted(snapshots, key=lambda snapshot: snapshot[0]):
        age = max(0.0, now - taken_at)
        for reading in readings:
            into = combined.setdefault(reading.name, ProviderReading(reading.name))
            if reading.remaining or reading.reset_s:
                into.remaining = dict(reading.remaining)
                into.reset_s = {limit: max(0.0, s - age) for limit, s in reading.reset_s.items()}
            into.resting_s = max(into.resting_s, reading.resting_s - age)
            for kind, count in reading.failures.items():
                into.failures[kind] = into.failures.get(kind, 0) + count
    return list(combined.values())


class ProviderCollector(Collector):
    """Reads the providers at scrape time: the last rate-limit headers each one sent, and its state."""

    def __init__(self, readings_of: Callable[[], list[ProviderReading]]) -> None:
        self._readings_of = readings_of

    def collect(self) -> Iterator[Metric]:
        remaining = GaugeMetricFamily(
            "voice_agent_llm_ratelimit_remaining",
            "What the provider's rate-limit headers say is left, by limit (requests, tokens).",
            labels=["provider", "limit"],
        )
        reset = GaugeMetricFamily(
            "voice_agent_llm_ratelimit_reset_seconds",
            "Seconds until the provider's limit resets, from its rate-limit headers.",
            labels=["provider", "limit"],
        )
        resting = GaugeMetricFamily(
            "voice_agent_llm_provider_resting_seconds",
            "Seconds until a provider whose quota is spent is asked again (0: available).",
            labels=["provider"],
        )
        failures = CounterMetricFamily(
            "voice_agent_llm_provider_failures",
            "Provider failures since start-up, by kind (overloaded, quota, rate_limited, auth, network...).",
            labels=["provider", "kind"],
        )
        for reading in self._readings_of():
            for limit, left in reading.remaining.items():
                remaining.add_metric([reading.name, limit], left)
            for limit, reset_in in reading.reset_s.items():
                reset.add_metric([reading.name, limit], reset_in)
            resting.add_metric([reading.name], reading.resting_s)
            for kind, count in reading.failures.items():
                failures.add_metric([reading.name, kind], count)
        yield from (remaining, reset, resting, failures)
