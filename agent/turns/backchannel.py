"""A back-channel is not a turn: "mm-hm", "yeah", "okay" (or a cough) over the agent's answer, and the answer goes on.

Barge-in stays instant: the VAD's confirmed speech stops the agent at once, because most speech over an answer is
a caller taking the turn. The caller's turn then ends as any other does (a turn of no words at all after the
shortest wait). When the LLM service is asked to answer it, and the turn cut off an answer the caller was hearing,
it checks `acknowledgement`: an acknowledgement, or pipecat's prompt for a turn that brought no words, gets no
new answer: the cut one goes on from the first word the caller did not hear (`unheard_rest`, after the words the
context kept as heard). The caller's "yeah" stays in the conversation, between the two parts of the answer.
"""

from __future__ import annotations

from typing import Any

from pipecat.turns.empty_user_turn import DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT

from agent.text import words

# Words that acknowledge without taking the turn, alone or a few together ("yeah okay", "mm-hm right"). "Yes",
# "no" and "sure" are left out: over the end of a question they are the caller's answer to it.
ACKNOWLEDGING = frozenset(
    {"mm", "mmm", "hmm", "hm", "mhm", "mmhmm", "uh", "huh", "ah", "oh", "yeah", "yep", "yup", "okay", "ok", "right",
     "alright", "cool", "great"}
)  # fmt: skip
PHRASES = frozenset({"i see", "got it", "uh huh", "mm hmm", "all right", "that's right", "go on", "oh okay"})
MAX_WORDS = 3


def is_backchannel(text: str) -> bool:
    """Whether the caller's words over an answer only acknowledged it (or were no words at all)."""
    heard = words(text)
    said = [word for i, word in enumerate(heard) if i == 0 or word != heard[i - 1]]  # "yeah yeah yeah" is one
    if not said:
        return True
    if len(said) > MAX_WORDS:
        return False
    return " ".join(said) in PHRASES or all(word in ACKNOWLEDGING for word in said)


def acknowledgement(messages: list[dict[str, Any]]) -> str | None:
    """The caller's words when the request's last message is a turn that only acknowledged ("" for pipecat's prompt
    for a turn that cut the agent off and brought no words); None for any other request."""
    last = messages[-1] if messages else {}
    content = last.get("content")
    if last.get("role") not in ("user", "developer") or not isinstance(content, str):
        return None
    if content == DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT:
        return ""
    return content if is_backchannel(content) else None


def unheard_rest(answer: str, heard: str) -> str:
    """The part of `answer` after the words the caller heard of it (`heard`: its start, or after a resume, the
    resumed part's start). When `heard` is not found in the answer (none of it was heard), the whole answer."""
    answer_words = answer.split()
    heard_words = words(heard)
    if not heard_words:
        return answer.strip()
    spoken = [words(word) for word in answer_words]
    # From the start (the caller heard the answer's beginning), else the last place it fits (a resumed part's).
    for start in [0, *range(len(answer_words) - 1, 0, -1)]:
        taken: list[str] = []
        end = start
        while end < len(answer_words) and len(taken) < len(heard_words):
            taken += spoken[end]
            end += 1
        if taken == heard_words:
            return " ".join(answer_words[end:])
    return answer.strip()
