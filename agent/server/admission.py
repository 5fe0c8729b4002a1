"""Admission by load: take a call only while this machine can still answer it within the latency budget.

Hard limits first: no call while draining, none without a free worker (or past `MAX_SESSIONS`). Then, for a call
that would share the machine with live ones (`ADMISSION=load`), what was measured recently:

- CPU, now and predicted: the machine's busy share over the last seconds (`ADMISSION_MAX_CPU_PERCENT`), and what
  one more call would make it: every second the busy share is read with the CPU the worker processes used and the
  number of live calls, giving the background (everything else, over the last seconds) and each live call's share
  (over the last minute: a call's CPU comes in bursts) (`CallCpu`); a level whose predicted busy
  share (background + calls x per call) is over the same limit is not admitted.
- answer times by load level: every answered turn's answer time (to the answer's first audio, not a filler's) is
  filed under the number of calls live when it was answered. A level whose recent turns (`ADMISSION_WINDOW_SECONDS`,
  at least `ADMISSION_MIN_TURNS` of them) had a p95 over `LATENCY_BUDGET_MS` is closed, as long as the load is what
  made them slow (they are slower than single calls by more than a tenth of the budget: a slow provider is no
  reason to turn callers away). A level without enough turns of its own is predicted on the straight line through
  the two highest measured levels below it (each added call costs what the last one did), and must clear the
  budget by the same tenth (contention grows faster than a line).
- a ramp: up to 60 % of the CPU limit by the prediction, calls are admitted freely (their turns can collide and
  still find a core); beyond it the machine admits one call more than the most it has answered within the budget
  with that margin, and the next only once that level has answered so too (calls on a 2-core machine answer as fast
  as one until their turns collide, which the line cannot foresee); with no line to go by, the step is predicted
  to slow the answers in proportion (four calls at 675 ms: five at 844). Calls that start together (as many as
  there are cores within `BURST_S`) get no free zone and no step: their turns will collide, so that many at once
  is admitted only where that many have answered in time. A server that has measured nothing yet may take two.

Predictions use each level's last answers, in the window or not (more turns than a window may hold, and a server
quiet for a while still knows what its calls cost). A new call is refused when the level it would create is closed
or predicted too slow or too busy, or when the live calls are already over the budget at today's level. A closed
level reopens when its slow turns have aged out of the window and the levels below predict it within the budget.

The first call is never refused for load: there is nobody to protect, and a slow answer beats a busy tone.

A phone call's slot is reserved when the carrier's call webhook is answered (the stream follows within a second or
two), or, for an outbound call, when it is dialled; so the stream is never refused afterwards. A reservation whose
stream never comes expires (after `PHONE_RESERVATION_SECONDS`; an outbound call's after its ring time).
`capacity()` (the most calls the current measurements allow) and `ready` feed `/metrics` and `GET /ready`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from agent.latency.turns import summarize
from agent.server.machine import CpuMeter
from agent.settings import Settings

LAST_TURNS_KEPT = 20  # answers kept per level beyond the window, for predictions
LOAD_MARGIN = 0.1  # of the budget: how much slower than single calls a level must be before load is to blame, and
# how far under the budget a predicted level must be
CPU_SMOOTHING = 0.2  # weight of each new one-second reading in CallCpu's background
BURST_S = 1.0  # calls admitted within this many seconds of each other count as starting together
CALL_CPU_READINGS = 60  # one-second readings with calls live that CallCpu averages a call's share over
CPU_FREE_SHARE = 0.6  # of ADMISSION_MAX_CPU_PERCENT: below this predicted busy share a level needs no ramp


@dataclass
class Slot:
    """One admitted call; `release()` (or leaving its `with` block) gives the slot back."""

    channel: str
    _release: Callable[[Slot], None] = field(repr=False)
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._release(self)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class AnswerTimes:
    """Recent answer times (ms), filed by the number of calls that were live when each turn was answered; and each
    level's last answers however old (what that many calls cost on this machine: what predictions start from)."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int, float]] = deque(maxlen=5000)
        self._last: defaultdict[int, deque[float]] = defaultdict(lambda: deque(maxlen=LAST_TURNS_KEPT))

    def add(self, level: int, ms: float) -> None:
        level = max(1, level)
        self._samples.append((self._clock(), level, ms))
        self._last[level].append(ms)

    def levels(self) -> list[int]:
        """The levels that have answers on file."""
        return sorted(self._last)

    def last_p95(self, level: int) -> tuple[int, float | None]:
        """(count, p95 ms) of the last turns answered at `level`, within the window or not."""
        values = list(self._last.get(level, ()))
        return len(values), summarize(values)["p95_ms"]

    def p95(self, level: int) -> tuple[int, float | None]:
        """(count, p95 ms) of the turns answered at `level` within the window."""
        since = self._clock() - self.window_s
        while self._samples and self._samples[0][0] < since:
            self._samples.popleft()
        values = [ms for _, at_level, ms in self._samples if at_level == level]
        return len(values), summarize(values)["p95_ms"]


class CallCpu:
    """What the live calls cost the machine's CPU: the busy share of everything else (the background, smoothed over
    the last seconds) and each live call's share (averaged over the last minute of call-seconds: a call's CPU comes
    in bursts at its turns, and a few seconds would catch a burst or a lull). Where the calls' own CPU is known (the
    worker processes'), each reading splits the machine's busy share by it, so other work on the machine (a worker
    warming up, a neighbour) is never billed to the calls; otherwise the background is what the machine does with no
    call live and the calls are billed the rest."""

    def __init__(self) -> None:
        self.background: float | None = None  # % of all cores
        self._calls: deque[tuple[float, int]] = deque(maxlen=CALL_CPU_READINGS)  # (% of all cores, live calls)

    @property
    def per_call(self) -> float | None:
        """One call's average share of all cores (%), or None before any call was measured."""
        live = sum(n for _, n in self._calls)
        return sum(p for p, _ in self._calls) / live if live else None

    def observe(self, busy_percent: float, live: int, calls_percent: float | None = None) -> None:
        if calls_percent is not None:
            self.background = _smoothed(self.background, max(0.0, busy_percent - calls_percent))
        elif live == 0:
            self.background = _smoothed(self.background, busy_percent)
        else:
            calls_percent = max(0.0, busy_percent - (self.background or 0.0))
        if live:
            self._calls.append((calls_percent, live))

    def predicted(self, level: int) -> float | None:
        """The busy share (%) with `level` calls live, or None before any call was measured."""
        if (per_call := self.per_call) is None:
            return None
        return (self.background or 0.0) + level * per_call


def _smoothed(average: float | None, value: float) -> float:
    return value if average is None else average + CPU_SMOOTHING * (value - average)


class Admission:
    """Decides whether one more call fits; tracks live calls, phone reservations and the drain."""

    def __init__(
        self,
        settings: Settings,
        *,
        idle_workers: Callable[[], int],
        calls_cpu_seconds: Callable[[], dict[str, float] | None] = lambda: None,
        cpu: CpuMeter | None = None,
        clock: Callable[[], float] = time.monotonic,
        cores: int | None = None,
    ) -> None:
        self.settings = settings
        self.cores = cores or os.cpu_count() or 1
        self._starts: deque[float] = deque()  # when the last calls were admitted (or their webhooks reserved)
        self.budget_ms = settings.latency_budget_ms
        self.cpu = cpu or CpuMeter()
        self.call_cpu = CallCpu()
        self._calls_cpu_seconds = calls_cpu_seconds
        self.answers = AnswerTimes(settings.admission_window_seconds, clock)
        self.draining = False
        self._idle_workers = idle_workers
        self._clock = clock
        self._live: Counter[str] = Counter()
        self._reservations: dict[str, float] = {}  # call SID -> expiry

    # -- state -----------------------------------------------------------------------------------
    @property
    def active(self) -> int:
        return sum(self._live.values())

    def active_on(self, channel: str) -> int:
        return self._live[channel]

    @property
    def reserved(self) -> int:
        now = self._clock()
        for sid in [sid for sid, expiry in self._reservations.items() if expiry <= now]:
            logger.warning(f"admission: the stream of call {sid} never came; its reservation expired")
            del self._reservations[sid]
        return len(self._reservations)

    def free_slots(self) -> int:
        """Calls that could start now by the hard limits alone (workers, MAX_SESSIONS, reservations)."""
        reserved = self.reserved
        by_sessions = self.settings.max_sessions - self.active - reserved
        return max(0, min(by_sessions, self._idle_workers() - reserved))

    @property
    def ready(self) -> bool:
        """What `GET /ready` says: not draining, and room for one more call."""
        return self.refusal() is None

    def capacity(self) -> int:
        """The most calls at once that the limits and the recent measurements allow now."""
        limit = min(self.settings.max_sessions, self.active + self.reserved + self.free_slots())
        level = 1
        while level < limit and self._load_refusal(level + 1) is None:
            level += 1
        return min(level, limit)

    # -- decisions -------------------------------------------------------------------------------
    def refusal(self) -> str | None:
        """Why one more call would be refused now, or None if it would be admitted."""
        if self.draining:
            return "draining"
        if self.free_slots() <= 0:
            return "no free worker" if self.active + self.reserved < self.settings.max_sessions else "MAX_SESSIONS"
        return self._load_refusal(self.active + self.reserved + 1)

    async def measure_cpu(self) -> None:
        """Every second, for as long as the server runs: the machine's CPU, and what the live calls cost of it."""
        cores = os.cpu_count() or 1
        last: tuple[float, dict[str, float]] | None = None  # (time.monotonic(), each call process's CPU seconds)
        while True:
            self.cpu.sample()
            calls_percent = None
            if (seconds := self._calls_cpu_seconds()) is not None:
                now = time.monotonic()
                if last is not None and now > last[0]:  # only processes in both readings: a new one's warm-up is not
                    used = sum(max(0.0, s - last[1][name]) for name, s in seconds.items() if name in last[1])
                    calls_percent = 100.0 * used / ((now - last[0]) * cores)
                last = (now, seconds)
            self.call_cpu.observe(self.cpu.busy_percent(), self.active, calls_percent)
            await asyncio.sleep(self.cpu.interval_s)

    def _load_refusal(self, level: int) -> str | None:
        if self.settings.admission != "load" or level <= 1:
            return None
        cpu, limit = self.cpu.busy_percent(), self.settings.admission_max_cpu_percent
        if limit < 100 and cpu >= limit:
            return f"CPU {cpu:.0f}% busy"
        predicted = self.call_cpu.predicted(level)
        if limit < 100 and predicted is not None and predicted > limit:
            return f"CPU predicted {predicted:.0f}% busy at {level} calls"
        slow = self._slow_reason(level) or self._slow_reason(level - 1)
        if slow:
            return slow
        together = self._starting_together()
        if predicted is not None and predicted <= CPU_FREE_SHARE * limit and together < self.cores:
            return None  # room for every call's turns to collide and still find a core
        proven = self._highest_level_within_margin()
        if level > proven + 1:
            return f"{level} calls untried: {proven} answered within the budget so far, one more at a time"
        if together >= self.cores and level > proven:
            return f"{together} calls just started: {level} at once only once {level} have answered in time"
        if proven >= 2 and self._predicted_p95(level) is None:  # one level to go by: its calls' share grows
            at_proven = self._p95_of_enough(*self.answers.last_p95(proven))
            assert at_proven is not None
            if (stepped := at_proven * level / proven) > (1 - LOAD_MARGIN) * self.budget_ms:
                return f"answers at {level} calls predicted over the budget ({stepped:.0f} ms from {proven} calls)"
        return None

    def _starting_together(self) -> int:
        """Calls admitted in the last BURST_S: calls that start together speak together, their turns collide."""
        since = self._clock() - BURST_S
        while self._starts and self._starts[0] < since:
            self._starts.popleft()
        return len(self._starts)

    def _highest_level_within_margin(self) -> int:
        """The most calls at once whose last answers cleared the budget by the margin (1 when none has yet)."""
        proven = 1
        for level in self.answers.levels():
            p95 = self._p95_of_enough(*self.answers.last_p95(level))
            if p95 is not None and p95 <= (1 - LOAD_MARGIN) * self.budget_ms:
                proven = max(proven, level)
        return proven

    def _slow_reason(self, level: int) -> str | None:
        """Why answers at `level` calls are too slow (measured, or predicted for an unmeasured level), or None."""
        if level == 1:
            return None
        p95, limit, how = self._measured_p95(level), self.budget_ms, "over"
        if p95 is None:  # a prediction must clear the budget by the margin: contention grows faster than a line
            p95, limit, how = self._predicted_p95(level), (1 - LOAD_MARGIN) * self.budget_ms, "predicted over"
        if p95 is None or p95 <= limit:
            return None
        single = self._measured_p95(1)
        if single is not None and p95 <= single + LOAD_MARGIN * self.budget_ms:
            return None  # no slower than single calls: the provider is slow, not the machine
        return f"answers at {level} calls {how} {limit:.0f} ms (p95 {p95:.0f} ms, budget {self.budget_ms:.0f} ms)"

    def _measured_p95(self, level: int) -> float | None:
        return self._p95_of_enough(*self.answers.p95(level))

    def _predicted_p95(self, level: int) -> float | None:
        """An unmeasured level's p95: on the straight line through the two highest levels below it that were
        measured (each added call costs what the last one did); None without two such levels: then the CPU and the
        ramp decide. Each level's last answers are used, in the window or not: more turns than a window may hold (a
        few lucky turns must not open the way), and a server quiet for a while still knows what its calls cost."""
        measured = [
            (below, p95)
            for below in range(level - 1, 0, -1)
            if (p95 := self._p95_of_enough(*self.answers.last_p95(below))) is not None
        ][:2]
        if len(measured) < 2:
            return None
        (upper, at_upper), (lower, at_lower) = measured
        return at_upper + (at_upper - at_lower) / (upper - lower) * (level - upper)

    def _p95_of_enough(self, count: int, p95: float | None) -> float | None:
        """A p95 worth judging by: over at least `ADMISSION_MIN_TURNS` turns."""
        return p95 if count >= self.settings.admission_min_turns else None

    def admit(self, channel: str) -> Slot | None:
        """A slot for a call starting now (the page, or a phone stream without a reservation), or None: busy."""
        reason = self.refusal()
        if reason:
            logger.info(f"admission: refused a {channel} call ({reason}); {self.active} live")
            return None
        self._starts.append(self._clock())
        return self._open(channel)

    def reserve(self, key: str, ttl_s: float | None = None) -> bool:
        """At a carrier's call webhook (`key`: the call's id), or when an outbound call is dialled (its dial id,
        held for `ttl_s`: the ring time and then some): hold a slot for the call's stream, or False (busy)."""
        if key in self._reservations:
            return True
        if reason := self.refusal():
            logger.info(f"admission: refused phone call {key} ({reason}); {self.active} live")
            return False
        self._starts.append(self._clock())
        self._reservations[key] = self._clock() + (ttl_s or self.settings.phone_reservation_seconds)
        return True

    def holds(self, key: str) -> bool:
        """Whether a reservation under `key` is still held (`reserved` drops the expired ones first)."""
        return self.reserved > 0 and key in self._reservations

    def cancel(self, key: str) -> None:
        """Give a reservation back (an outbound call the carrier would not place)."""
        self._reservations.pop(key, None)

    def claim(self, key: str) -> Slot | None:
        """At the stream's start: the call's reservation (never refused), or a fresh admission without one."""
        if self._reservations.pop(key, None) is not None:
            return self._open("phone")
        return self.admit("phone")

    def record_answer(self, report: dict[str, Any]) -> None:
        """A turn was answered: file its answer time (`answer_ms`, from the caller's end of speech to the answer's
        first audio; an acknowledgement or other filler before it does not count) under the number of calls live."""
        if (ms := report.get("answer_ms")) is not None:
            self.answers.add(self.active, ms)

    def start_drain(self) -> None:
        self.draining = True

    # -- internals -------------------------------------------------------------------------------
    def _open(self, channel: str) -> Slot:
        self._live[channel] += 1
        return Slot(channel, self._close)

    def _close(self, slot: Slot) -> None:
        self._live[slot.channel] = max(0, self._live[slot.channel] - 1)
