"""Text chunking for TTS: the first speakable clause of an answer goes to the voice as early as possible, then whole
sentences.

`ClauseChunker` sits between the LLM and the TTS and sends each chunk as an `AggregatedTextFrame`, pipecat's frame
for text already aggregated upstream: the TTS speaks it as it is, and times its words as one spoken segment. The
first chunk of an answer is released at the first clause boundary (`,` `;` `:` or a dash) once it has a few words, or
after `max_first_words` words with no punctuation at all, so the caller hears the answer start while the LLM is still
writing it. After that, chunks are whole sentences, which sound more natural.
"""

from __future__ import annotations

from pipecat.frames.frames import (
    AggregatedTextFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.text.base_text_aggregator import TextType

from agent.text import ends_clause, ends_sentence


class ClauseSplitter:
    """Accumulates streamed text and says, at each word boundary, whether a speakable chunk is ready."""

    def __init__(self, *, min_clause_words: int = 2, max_first_words: int = 6) -> None:
        self._min_clause_words = min_clause_words
        self._max_first_words = max_first_words
        self._text = ""
        self._first = True

    def add(self, text: str) -> list[str]:
        """Feed streamed text; returns the chunks it completes."""
        chunks = []
        for char in text:
            if char.isspace() and self._text and not self._text[-1].isspace() and (chunk := self._ready_chunk()):
                chunks.append(chunk)
            self._text += char
        return chunks

    def flush(self) -> str:
        """Whatever is left (the end of the answer)."""
        rest = self._text.strip()
        self.reset()
        return rest

    def reset(self) -> None:
        self._text = ""
        self._first = True

    def _ready_chunk(self) -> str | None:
        body = self._text.strip()
        done = ends_sentence(body)
        if self._first and not done:
            count = len(body.split())
            done = (ends_clause(body) and count >= self._min_clause_words) or count >= self._max_first_words
        if not done:
            return None
        self._text = ""
        self._first = False
        return body


class ClauseChunker(FrameProcessor):
    """Turns the LLM's token stream into clause- and sentence-sized `AggregatedTextFrame`s for the TTS."""

    def __init__(self, *, min_clause_words: int = 2, max_first_words: int = 6, **kwargs) -> None:
        super().__init__(**kwargs)
        self._splitter = ClauseSplitter(min_clause_words=min_clause_words, max_first_words=max_first_words)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, LLMTextFrame):
            for chunk in self._splitter.add(frame.text):
                await self.push_frame(AggregatedTextFrame(chunk, TextType.SENTENCE))
            return
        if isinstance(frame, LLMFullResponseEndFrame) and (rest := self._splitter.flush()):
            await self.push_frame(AggregatedTextFrame(rest, TextType.SENTENCE))
        elif isinstance(frame, (LLMFullResponseStartFrame, InterruptionFrame)):
            self._splitter.reset()
        await self.push_frame(frame, direction)
