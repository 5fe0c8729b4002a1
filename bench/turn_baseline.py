"""The end-of-turn rule the learned decision replaced (2026-12-02), kept as the turn benchmark's baseline.

Waits were chosen from how the transcript ended: long (800 ms) when the last word was on a hand-kept list of words a
sentence rarely ends on or the text trailed off in a comma or an ellipsis, short (300 ms) after a sentence-final
mark on more than one word, medium (400 ms) otherwise, and Smart Turn at 0.7 or more moved a medium wait to short.
"""

from __future__ import annotations

import re

from agent.text import ends_sentence, words

SHORT_S, MEDIUM_S, LONG_S = 0.3, 0.4, 0.8
SOUNDS_FINISHED = 0.7
_AUXILIARIES = """
is was are were be been being am do does did have has had will would can could should shall may might must
"""
_TRAILING_WORDS = """
and but or so because if when while although though since unless until than that which who whose where
the a an this these those my your his her our their some any every
to of with in on at for from by about into onto over under through after before like as
not i he she we they um uh er hmm
"""
AUXILIARIES = frozenset(_AUXILIARIES.split())
TRAILING = frozenset(_TRAILING_WORDS.split()) | AUXILIARIES
_TRAILS_OFF = re.compile(r"([,;:\-–—]|\.\.\.|…)$")


def word_list_wait_s(text: str, voice: float) -> float:
    """The old rule's wait after `text`, with Smart Turn's P(finished) for the voice."""
    said = words(text)
    ends_comparison = len(said) >= 3 and said[-1] in AUXILIARIES and said[-3] in ("than", "as")
    if not said or (said[-1] in TRAILING and not ends_comparison) or _TRAILS_OFF.search(text.strip()):
        return LONG_S
    if ends_sentence(text) and len(said) > 1:
        return SHORT_S
    return SHORT_S if voice >= SOUNDS_FINISHED else MEDIUM_S
