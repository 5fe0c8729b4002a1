"""What the machine is doing, read from Linux's /proc: how busy its CPUs have been over the last seconds, how much
CPU time a process has used, and how much memory a set of processes holds (PSS, so pages shared between the front,
its workers and the LLM server are counted once, split between them)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, or None where /proc/stat does not exist."""
    try:
        fields = (PROC / "stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    values = [float(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return total - idle, total


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all its threads) a process has used so far; 0 if it is gone or unreadable."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """The machine's CPU busy share (0-100 %, all cores together) over the last `window_s` seconds, sampled once a
    second (`Admission.measure_cpu`). Before two samples exist (or off Linux) it reads 0: nothing known, nothing
    refused."""

    def __init__(
        self,
        window_s: float = 5.0,
        interval_s: float = 1.0,
        read: Callable[[], tuple[float, float] | None] = cpu_times,
    ) -> None:
        self.interval_s = interval_s
        self._read = read
        self._samples: deque[tuple[float, float]] = deque(maxlen=max(2, int(window_s / interval_s) + 1))

    def sample(self) -> None:
        times = self._read()
        if times is not None:
            self._samples.append(times)

    def busy_percent(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        busy0, total0 = self._samples[0]
        busy1, total1 = self._samples[-1]
        return 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (0 if it is gone or unreadable)."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct child processes of `pid`."""
    found = []
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def process_tree(pid: int | None = None) -> list[int]:
    """`pid` (default: this process) and all its descendants."""
    tree, pending = [], [pid or os.getpid()]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += children(current)
    return tree


def tree_pss_bytes(pid: int | None = None) -> int:
    """PSS summed over a process and all its descendants: the memory a server (front, workers, LLM) holds."""
    return sum(pss_bytes(p) for p in process_tree(pid))
