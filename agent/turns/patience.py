"""How long this caller pauses mid-sentence, learned from the answers they talked over.

Nothing in the words or the voice tells a finished sentence from one a caller pauses after and then goes on ("I need
to reschedule. ... my appointment for Friday": Whisper writes the period, Smart Turn scores it finished). A person
on the phone learns it from the caller: once cut off by their next words, they wait longer for this caller. So does
the agent: when the caller goes on talking within `FALSE_START_S` of the agent starting to answer, after a silence
of at most `LONGEST_PAUSE_S`, that silence (plus a margin) becomes the least wait before answering them, for the
rest of the call: no longer than the latency budget allows, so a patient answer is still a timely one.
"""

from __future__ import annotations

from agent.latency.turns import FALSE_START_S

LONGEST_PAUSE_S = 1.0  # a caller silent longer than this before going on was done, not pausing
AFTER_THE_WAIT_S = 0.15  # the VAD's let-go before the wait is counted and the answer's first audio after it (~80+30 ms)
MARGIN_S = 0.25  # waited beyond the longest pause seen: the same caller's pauses vary by about this much


class CallerPauses:
    """The least silence to wait for before answering this caller: none until they talk over an answer that
    started in their pause, then the longest such pause plus a margin (never more than `most_s`). A silence shorter
    than `least_s`, the shortest wait, was no pause an answer could start in (the caller talking over the greeting)."""

    def __init__(self, least_s: float, most_s: float) -> None:
        self._least_s = least_s
        self._most_s = most_s
        self._answer_started_at: float | None = None
        self.wait_s = 0.0

    @classmethod
    def within(cls, shortest_s: float, longest_s: float, budget_s: float) -> CallerPauses:
        """Between the shortest wait and the longest one that still answers within the budget."""
        return cls(least_s=shortest_s, most_s=min(longest_s, budget_s - AFTER_THE_WAIT_S))

    def answer_started(self, now: float) -> None:
        if self._answer_started_at is None:
            self._answer_started_at = now

    def answer_ended(self) -> None:
        self._answer_started_at = None

    def caller_resumed(self, now: float, silence_s: float) -> bool:
        """The caller speaks again after `silence_s` of silence: True when that was a pause the agent answered
        into (the wait has been lengthened)."""
        started, self._answer_started_at = self._answer_started_at, None
        if started is None or now - started > FALSE_START_S or not self._least_s <= silence_s <= LONGEST_PAUSE_S:
            return False
        self.wait_s = min(self._most_s, max(self.wait_s, silence_s + MARGIN_S))
        return True
