"""A signed webhook is accepted once: the memory of the signed requests a gate has already let in.

A carrier's signature proves who sent a request, not that it is the first time: a captured request posted again
carries the same valid signature (within Telnyx's timestamp tolerance; forever for Plivo's V3 signature, which has
no timestamp). Each gate remembers a digest of every signed request it accepted (the signature headers and the
body) for `window_s`, and refuses the same bytes again. The memory lives in the process that answers webhooks (the
front process, for every worker) and is bounded to `max_entries` digests, the oldest forgotten first.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

WINDOW_S = 3600.0  # longer than any carrier's retry schedule or signature tolerance
MAX_ENTRIES = 100_000


class ReplayGuard:
    """Remembers signed requests for `window_s` and says whether one was seen before."""

    def __init__(
        self, window_s: float = WINDOW_S, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # digest -> when it was first accepted

    def first_time(self, parts: Iterable[bytes]) -> bool:
        """True (and remembered) the first time these parts are seen within the window; False for a replay."""
        digest = hashlib.sha256(b"\0".join(parts)).digest()
        now = self._clock()
        while self._seen and (self._oldest() <= now - self._window_s or len(self._seen) >= self._max_entries):
            self._seen.popitem(last=False)
        if digest in self._seen:
            return False
        self._seen[digest] = now
        return True

    def _oldest(self) -> float:
        return next(iter(self._seen.values()))
