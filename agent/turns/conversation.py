"""The call's conversation (pipecat's `LLMContext`), with each caller turn written as it was understood.

The user aggregator writes a turn as the concatenation of the transcripts it received, one per VAD stop. The STT
re-transcribes the whole turn at each stop, so the last transcript is the better one, and it is the text the LLM was
asked (speculatively, before the turn was confirmed). Writing that same text keeps the history true and the next
request a byte-for-byte extension of this one, so the provider's prompt cache hits.
"""

from __future__ import annotations

from typing import cast

from pipecat.processors.aggregators.llm_context import LLMContext, LLMContextMessage


class Conversation(LLMContext):
    """An `LLMContext` whose next user message can be told what the caller's turn said."""

    def __init__(self) -> None:
        super().__init__()
        self._user_turn_text: str | None = None

    def expect_user_turn(self, text: str) -> None:
        """The next user message written is the turn that said `text`."""
        self._user_turn_text = text

    def last_agent_words(self) -> str:
        """What the agent said last (its last assistant message's text), or "" before it has said anything."""
        for message in reversed(self.get_messages()):
            if isinstance(message, dict) and message.get("role") == "assistant":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        return ""

    def add_message(self, message: LLMContextMessage) -> None:
        if self._user_turn_text is not None and isinstance(message, dict) and message.get("role") == "user":
            message = cast(LLMContextMessage, {**message, "content": self._user_turn_text})
            self._user_turn_text = None
        super().add_message(message)
