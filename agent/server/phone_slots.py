"""Capacity for phone calls, claimed in one place whatever the carrier and direction.

An incoming call claims its slot when its stream arrives (its webhook only checks that one is free). An outbound
call claims its slot when it is dialled, as a reservation under its dial id: the stream that answers it takes the
reservation over, and a call nobody answers gives the slot back after DIAL_TIMEOUT_SECONDS. The reservation also
keeps what the agent says first on that call.

The slots are `SessionSlots` (app.py) today; the capacity work (workers, admission by load) replaces them behind
`reserve()` and `claim()`, which are the only two call sites.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from agent.server.app import SessionSlots


@dataclass
class PhoneSlot:
    """One call's claim on the capacity; `release()` (or leaving its `with` block) gives it back, once."""

    greeting: str
    _release: Callable[[], None] = field(repr=False)
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._release()

    def __enter__(self) -> PhoneSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class Reservation:
    greeting: str
    expires_at: float


class PhoneSlots:
    """See the module docstring."""

    def __init__(self, slots: SessionSlots, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._slots = slots
        self._ttl_s = ttl_s
        self._clock = clock
        self._reservations: dict[str, Reservation] = {}

    @property
    def full(self) -> bool:
        """No slot for another incoming call (reservations count as taken)."""
        self._expire()
        return self._slots.active >= self._slots.limit

    def reserved(self, dial_id: str | None) -> bool:
        self._expire()
        return bool(dial_id) and dial_id in self._reservations

    def reserve(self, dial_id: str, greeting: str) -> bool:
        """Take a slot for an outbound call about to be dialled; False when none is free."""
        self._expire()
        if not self._slots.claim():
            return False
        self._reservations[dial_id] = Reservation(greeting, self._clock() + self._ttl_s)
        return True

    def cancel(self, dial_id: str) -> None:
        """The dial failed: give its slot back."""
        if self._reservations.pop(dial_id, None) is not None:
            self._slots.release()

    def claim(self, dial_id: str | None) -> PhoneSlot | None:
        """The slot of a call whose stream arrived: its outbound reservation, or a free one; None when full."""
        self._expire()
        reservation = self._reservations.pop(dial_id, None) if dial_id else None
        if reservation is None and not self._slots.claim():
            return None
        return PhoneSlot(reservation.greeting if reservation else "", self._slots.release)

    def _expire(self) -> None:
        now = self._clock()
        for dial_id in [d for d, r in self._reservations.items() if r.expires_at <= now]:
            logger.warning(f"phone: outbound call {dial_id} was not answered in time; its slot is free again")
            self.cancel(dial_id)
