"""The input guard's arithmetic on a controlled clock: real time and a carrier's catch-up burst pass, a sustained
2x flood is dropped and then cut, a silent line times out. (The same guard on real sockets: test_phone_security.)"""

from __future__ import annotations

from agent.protocols.input_guard import BURST_S, FLOOD_DISCONNECT_S, InputGuard

FRAME_S = 0.02


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def send(guard: InputGuard, clock: Clock, seconds: float, speed: float) -> tuple[int, int]:
    """Send `seconds` of 20 ms frames at `speed` x real time; (admitted, dropped)."""
    admitted = dropped = 0
    for _ in range(round(seconds / FRAME_S)):
        clock.now += FRAME_S / speed
        ok = not guard.exhausted() and guard.admit(FRAME_S)
        admitted, dropped = admitted + ok, dropped + (not ok)
    return admitted, dropped


def test_real_time_and_a_catch_up_burst_pass():
    clock = Clock()
    guard = InputGuard("test", 30, clock=clock)
    assert send(guard, clock, 60, 1.0) == (3000, 0)
    assert send(guard, clock, BURST_S - 0.5, 1000.0)[1] == 0  # 2.5 s of backlog delivered at once
    assert send(guard, clock, 30, 1.0)[1] == 0
    assert guard.broken_bound() is None


def test_a_sustained_flood_is_dropped_then_cut():
    clock = Clock()
    guard = InputGuard("test", 30, clock=clock)
    # At 2x the burst allowance lasts 6 s of wall time; then 4 s of dropping.
    wall_s = BURST_S / 0.5 + FLOOD_DISCONNECT_S - 1
    admitted, dropped = send(guard, clock, 2 * wall_s, 2.0)
    assert dropped > 0 and admitted * FRAME_S <= BURST_S + 1.5 * wall_s + FRAME_S
    assert guard.broken_bound() is None  # dropping, not yet cut ...
    assert send(guard, clock, 1, 2.0) == (0, 50)  # ... but nothing gets through any more: hostile
    send(guard, clock, 4, 2.0)
    assert guard.broken_bound() == "flood"


def test_a_short_excess_is_forgiven_a_longer_one_is_not():
    clock = Clock()
    guard = InputGuard("test", 30, clock=clock)
    assert send(guard, clock, 7.5, 3.0)[1] > 0  # 2.5 s of wall time at 3x: the last 0.5 s dropped
    assert send(guard, clock, 10, 1.0)[1] == 0  # real time again: all through
    assert guard.broken_bound() is None
    send(guard, clock, 12, 3.0)  # 4 s at 3x: 2 s of dropping, hostile
    assert send(guard, clock, 4, 1.0) == (0, 200)  # calming down does not help any more
    assert guard.broken_bound() == "flood"


def test_a_silent_line_times_out_but_messages_without_audio_do_not_count_as_audio():
    clock = Clock()
    guard = InputGuard("test", 5, clock=clock)
    for _ in range(120):  # 6 s of marks, malformed messages: no audio
        clock.now += 0.05
        assert not guard.exhausted() and guard.admit(0)
    assert guard.broken_bound() == "idle"
