"""Token buckets: how many of something a client (and everyone together) may do, in a burst and over time.

`RateLimit.take(key)` spends one token from `key`'s bucket and one from the shared bucket, or none when either is
empty, and says how long until it would succeed. Buckets refill continuously; the per-key ones are kept for the
`MAX_KEYS` most recent keys only, so a stranger rotating keys cannot grow the table.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 1024


@dataclass
class Bucket:
    """`capacity` tokens, refilled at `per_s` a second."""

    capacity: float
    per_s: float
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_s)
        self.at = now

    def wait_s(self) -> float:
        """Seconds until a whole token is there (0: now)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.per_s if self.per_s > 0 else float("inf")


class RateLimit:
    """A burst of `burst` per key at `per_minute` a minute, within `total_per_minute` a minute for all keys together
    (with a burst of `total_burst`)."""

    def __init__(
        self,
        *,
        burst: int,
        per_minute: float,
        total_burst: int,
        total_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst, self._per_s = burst, per_minute / 60
        self._clock = clock
        self._total = Bucket(total_burst, total_per_minute / 60, total_burst, clock())
        self._keys: OrderedDict[str, Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one for `key` (0.0 returned), or spend nothing and return the seconds until it would succeed."""
        now = self._clock()
        mine = self._keys.pop(key, None) or Bucket(self._burst, self._per_s, self._burst, now)
        self._keys[key] = mine
        while len(self._keys) > MAX_KEYS:
            self._keys.popitem(last=False)
        mine.refill(now)
        self._total.refill(now)
        wait_s = max(mine.wait_s(), self._total.wait_s())
        if wait_s == 0:
            mine.tokens -= 1
            self._total.tokens -= 1
        return wait_s
