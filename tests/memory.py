"""The test process's memory (the servers under test run in it): resident set size, sampled while an abuse runs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_MB


@dataclass
class Growth:
    baseline_mb: float
    peak_mb: float = 0.0

    @property
    def mb(self) -> float:
        return max(0.0, self.peak_mb - self.baseline_mb)


@asynccontextmanager
async def peak_rss_growth(every_s: float = 0.02) -> AsyncIterator[Growth]:
    """How far the resident set rose above its level at entry, at its highest while inside."""
    growth = Growth(baseline_mb=rss_mb())
    growth.peak_mb = growth.baseline_mb

    async def sample() -> None:
        while True:
            growth.peak_mb = max(growth.peak_mb, rss_mb())
            await asyncio.sleep(every_s)

    task = asyncio.create_task(sample())
    try:
        yield growth
    finally:
        task.cancel()
        growth.peak_mb = max(growth.peak_mb, rss_mb())
