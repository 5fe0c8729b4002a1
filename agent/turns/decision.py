"""One decision from all the evidence: how long to wait, after a VAD stop, before the caller's turn is over.

Three things are read at each stop: the words (`words.py`, SmolLM2's probability that the message is over), the
voice (Smart Turn v3's probability that the speech sounds finished), and whether the turn is a short reply (at most
`SHORT_REPLY_WORDS` words: "five five", "yes", a name, answers the words model doubts). The probabilities become
log-odds, and a weighted sum (weights fitted by logistic regression on the turn-taking benchmark's tuning half,
`bench/turns.py`) gives one probability that the caller is done. The wait follows from it:

- at or above `threshold`: the short wait (`END_OF_TURN_MIN_MS`): answer now;
- `band` log-odds or more below it: the long wait (`END_OF_TURN_MAX_MS`): the words stopped mid-phrase ("to",
  "and the", "can you put") and the caller may pause for up to a second;
- in between, a wait that grows in proportion: the less likely the caller is done, the longer the agent listens.

A signal that is missing (no transcript yet, or a model not loaded) counts as undecided (log-odds 0). The threshold
is the operator's trade-off between false starts and latency (`END_OF_TURN_THRESHOLD`); the benchmark draws the
curve it moves along.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SHORT_REPLY_WORDS = 3
NEGLIGIBLE = 0.05  # a weight below this: the signal moves no decision, so it is not computed
CLIP = 9.0  # log-odds beyond this are no surer (a probability of 1e-4 and one of 1e-9 say the same)


def log_odds(p: float | None) -> float:
    """The log-odds of a probability, clipped; 0 (undecided) for a missing one."""
    if p is None:
        return 0.0
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-CLIP, min(CLIP, math.log(p / (1 - p))))


@dataclass(frozen=True)
class TurnEvidence:
    """What is known at a VAD stop: each model's probability that the caller is done (None when not asked)."""

    words: float | None = None
    voice: float | None = None
    word_count: int = 0  # words in the transcript so far

    @property
    def short_reply(self) -> bool:
        return 0 < self.word_count <= SHORT_REPLY_WORDS


@dataclass(frozen=True)
class TurnRule:
    """The calibrated combination, P(done) = sigmoid(bias + words * logit(P_words) + voice * logit(P_voice) +
    short_reply * [a short reply]), and the wait it calls for between the shortest and the longest."""

    bias: float
    words: float
    voice: float
    short_reply: float = 0.0
    threshold: float = 0.5
    band: float = 4.0  # log-odds below the threshold at which the wait reaches the longest

    def done(self, evidence: TurnEvidence) -> float:
        """The combined probability that the caller's turn is over."""
        z = self.bias + self.words * log_odds(evidence.words) + self.voice * log_odds(evidence.voice)
        z += self.short_reply * evidence.short_reply
        return 1 / (1 + math.exp(-z))

    @property
    def uses_voice(self) -> bool:
        """Whether Smart Turn is worth running at a stop (the calibration can weigh it at next to nothing)."""
        return abs(self.voice) >= NEGLIGIBLE

    def patience(self, evidence: TurnEvidence) -> float:
        """0 (answer after the shortest wait) to 1 (wait the longest)."""
        below = log_odds(self.threshold) - log_odds(self.done(evidence))
        return min(1.0, max(0.0, below / self.band)) if self.band > 0 else float(below > 0)

    def wait_s(self, evidence: TurnEvidence, shortest_s: float, longest_s: float) -> float:
        return shortest_s + self.patience(evidence) * (longest_s - shortest_s)


# Fitted on the tuning half of `python -m bench.turns --tune` (README, "Turn taking"); the threshold is a setting.
RULE = TurnRule(bias=3.7, words=0.95, voice=0.02, short_reply=1.74, band=6.0)
