"""The test process's memory (the servers under test run in it) while an abuse runs: the Python heap it takes
(tracemalloc: every queue, buffer and frame the server holds, exactly) and the resident set (which also moves with
native libraries' allocator caches: Whisper, ONNX, numpy; noisy by tens of MB from call to call)."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
HEAP_LIMIT_MB = 50  # what an abuse may make the server hold
RSS_LIMIT_MB = 200  # a runaway (an unbounded queue) would pass it within seconds; allocator noise does not


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_MB


@dataclass
class Growth:
    baseline_rss_mb: float
    peak_rss_mb: float = 0.0
    heap_mb: float = 0.0

    @property
    def rss_mb(self) -> float:
        return max(0.0, self.peak_rss_mb - self.baseline_rss_mb)

    def check(self, what: str) -> None:
        print(f"{what}: Python heap grew {self.heap_mb:.1f} MB at its peak, resident set {self.rss_mb:.1f} MB")
        assert self.heap_mb < HEAP_LIMIT_MB, f"{what}: the Python heap grew {self.heap_mb:.0f} MB"
        assert self.rss_mb < RSS_LIMIT_MB, f"{what}: the resident set grew {self.rss_mb:.0f} MB"


@asynccontextmanager
async def memory_growth(every_s: float = 0.02) -> AsyncIterator[Growth]:
    """How far the Python heap and the resident set rose above their levels at entry, at their highest inside."""
    growth = Growth(baseline_rss_mb=rss_mb())
    growth.peak_rss_mb = growth.baseline_rss_mb

    async def sample() -> None:
        while True:
            growth.peak_rss_mb = max(growth.peak_rss_mb, rss_mb())
            await asyncio.sleep(every_s)

    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    task = asyncio.create_task(sample())
    try:
        yield growth
    finally:
        task.cancel()
        growth.peak_rss_mb = max(growth.peak_rss_mb, rss_mb())
        growth.heap_mb = (tracemalloc.get_traced_memory()[1] - start) / 2**20
        tracemalloc.stop()
