"""Phone calls' slots, taken through the capacity's admission (`admission.py`) in one place whatever the carrier
and the direction.

An incoming call reserves its slot at the carrier's call webhook (under its call id; busy when none is free) and
claims it when its stream arrives. An outbound call reserves its slot when it is dialled, under its dial id, for
the ring time and then some: its answer webhook finds the reservation (it is never answered busy), the stream
claims it, and a call nobody answers gives it back when the reservation expires. The outbound reservation also
keeps what the agent says first on that call. A call has one live stream at a time: a second stream for a call
whose stream is live is refused, whatever token it brings. Outbound calls, ringing or live, may hold at most
`max_share` of the server's capacity (`DIAL_MAX_SHARE`), so dialling never locks out callers ringing in.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.server.admission import Admission, Slot
from agent.telephony.gate import StreamOpening


@dataclass
class PhoneSlot:
    """A phone call's admitted slot, and the greeting the agent opens an outbound call with ("" for incoming)."""

    slot: Slot
    greeting: str = ""

    def __enter__(self) -> PhoneSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.slot.release()


class PhoneSlots:
    """See the module docstring."""

    def __init__(self, admission: Admission, dial_ttl_s: float, max_share: float = 1.0) -> None:
        self.admission = admission
        self._dial_ttl_s = dial_ttl_s
        self._max_share = max_share
        self._greetings: dict[str, str] = {}  # dial id -> greeting, while its reservation is held
        self._outbound: list[Slot] = []  # the live outbound calls' slots
        self._streams: set[tuple[str, str]] = set()  # (carrier, call id) of every live stream

    @property
    def outbound_calls(self) -> int:
        """Outbound calls ringing (reserved) or live."""
        self._greetings = {d: g for d, g in self._greetings.items() if self.admission.holds(d)}
        self._outbound = [slot for slot in self._outbound if not slot.released]
        return len(self._greetings) + len(self._outbound)

    def outbound_room(self) -> bool:
        """Whether one more outbound call stays within the share of the capacity outbound calls may hold."""
        return self.outbound_calls < int(self._max_share * self.admission.capacity())

    def outbound(self, dial_id: str | None) -> bool:
        """Whether `dial_id` names an outbound call whose slot is still reserved."""
        return bool(dial_id) and self.admission.holds(dial_id)

    def reserve_incoming(self, call_id: str) -> bool:
        """At an incoming call's webhook: hold a slot for its stream; False: answer busy."""
        return self.admission.reserve(call_id)

    def reserve_dial(self, dial_id: str, greeting: str) -> bool:
        """Take a slot for an outbound call about to be dialled (after `outbound_room()`); False when none is free
        (or draining)."""
        if not self.admission.reserve(dial_id, self._dial_ttl_s):
            return False
        self._greetings[dial_id] = greeting
        return True

    def cancel(self, dial_id: str) -> None:
        """The dial failed: give its slot back."""
        self.admission.cancel(dial_id)
        self._greetings.pop(dial_id, None)

    def begin_stream(self, opening: StreamOpening) -> bool:
        """The call's stream starts; False when the call already has a live one (one stream per call, whatever
        token the second brought)."""
        key = (opening.carrier, opening.call_id)
        if key in self._streams:
            return False
        self._streams.add(key)
        return True

    def end_stream(self, opening: StreamOpening) -> None:
        self._streams.discard((opening.carrier, opening.call_id))

    def claim(self, opening: StreamOpening) -> PhoneSlot | None:
        """The slot of a call whose stream arrived: its reservation (outbound, or from its webhook), or a fresh
        admission for a stream no webhook of ours announced; None: no room."""
        dialled = bool(opening.dial_id) and self.outbound(opening.dial_id)
        slot = self.admission.claim(opening.dial_id or opening.call_id)
        greeting = self._greetings.pop(opening.dial_id, "") if opening.dial_id else ""
        if slot and dialled:
            self._outbound.append(slot)
        return PhoneSlot(slot, greeting) if slot else None
