"""What counts as the end of a sentence or a clause, for every part that asks: the LLM stage (how many sentences
were spoken), and the TTS chunker (when to synthesise)."""

from __future__ import annotations

import re

# A sentence ends in . ! ? or … possibly followed by closing quotes or brackets ("3.5" is not an end: no space after).
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")
_SENTENCE_BREAK = re.compile(r"[.!?…][\"')\]]*(?=\s)")
# A clause ends at a comma, semicolon, colon or a dash.
_CLAUSE_END = re.compile(r"([,;:]|\s[-–—]|[–—])$")
_WORD = re.compile(r"[a-z0-9']+")


def ends_sentence(text: str) -> bool:
    """Whether `text` (stripped) ends with a finished sentence."""
    stripped = text.strip()
    return bool(_SENTENCE_END.search(stripped)) and not stripped.endswith(("...", "…"))


def ends_clause(text: str) -> bool:
    return bool(_CLAUSE_END.search(text.strip()))


def count_sentences(text: str) -> int:
    """Finished sentences in `text`: breaks followed by more text, plus a final one."""
    return len(_SENTENCE_BREAK.findall(text)) + (1 if ends_sentence(text) else 0)


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped."""
    return _WORD.findall(text.lower())


def same_words(a: str, b: str) -> bool:
    """Equal but for case, punctuation and spacing ("Ten of clubs." == "ten of clubs")."""
    return words(a) == words(b)
