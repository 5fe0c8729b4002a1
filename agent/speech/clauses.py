"""Text chunking for TTS: release the first speakable clause as early as possible, then sentences.

The first chunk of an answer goes to TTS at the first clause boundary (`,` `;` `:` or a dash) once it has a few
words, or after `max_first_words` words with no punctuation at all, so the caller hears the answer start while the
LLM is still writing it. After that, chunks are whole sentences, which sound more natural.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from pipecat.utils.text.base_text_aggregator import Aggregation, BaseTextAggregator, TextType

_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")
_CLAUSE_END = re.compile(r"([,;:]|\s[-–—]|[–—])$")


class ClauseTextAggregator(BaseTextAggregator):
    def __init__(self, *, min_clause_words: int = 2, max_first_words: int = 6) -> None:
        super().__init__(aggregation_type=TextType.SENTENCE)
        self._min_clause_words = min_clause_words
        self._max_first_words = max_first_words
        self._text = ""
        self._first = True

    @property
    def text(self) -> Aggregation:
        return Aggregation(text=self._text.strip(), type=TextType.SENTENCE)

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        for char in text:
            if char.isspace() and self._text and not self._text[-1].isspace():
                chunk = self._ready_chunk()
                if chunk:
                    yield chunk
            self._text += char

    def _ready_chunk(self) -> Aggregation | None:
        """Called at each word boundary: is what we hold worth sending to TTS now?"""
        body = self._text.strip()
        words = len(body.split())
        done = bool(_SENTENCE_END.search(body))
        if self._first and not done:
            done = (bool(_CLAUSE_END.search(body)) and words >= self._min_clause_words) or (
                words >= self._max_first_words
            )
        if not done:
            return None
        self._text = ""
        self._first = False
        return Aggregation(text=body, type=TextType.SENTENCE)

    async def flush(self) -> Aggregation | None:
        body = self._text.strip()
        await self.reset()
        return Aggregation(text=body, type=TextType.SENTENCE) if body else None

    async def handle_interruption(self) -> None:
        await self.reset()

    async def reset(self) -> None:
        self._text = ""
        self._first = True
