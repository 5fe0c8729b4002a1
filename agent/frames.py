"""Frames the agent adds to pipecat's: how the processors of one call tell each other what they know."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipecat.frames.frames import (
    DataFrame,
    LLMMessagesAppendFrame,
    SpeechOutputAudioRawFrame,
    SystemFrame,
    TranscriptionFrame,
)

PhraseKind = Literal["acknowledgement", "apology", "goodbye", "hold", "drain_goodbye"]
TurnVerdict = Literal["complete", "cut_off", "needs_time"]


@dataclass
class SpeechEndFrame(SystemFrame):
    """Sent by the STT when the VAD calls the speech over: the caller's speech really ended `silence_s` ago.

    The VAD decides only after its smoothing lets go, so this (measured by energy on the utterance's audio) is the
    true end of speech that the latency budget counts from.
    """

    silence_s: float = 0.0


@dataclass
class TurnTranscriptionFrame(TranscriptionFrame):
    """The transcript after one more stretch of the caller's speech: `text` is what is new since the last one (what
    the user aggregator appends to the turn), `turn_text` the whole turn so far, re-transcribed with all its audio
    (what the end-of-turn strategy and the latency report read). The two agree unless Whisper revised earlier words.
    `segment` numbers the VAD stop it answers (1 for the call's first): only the latest one decides anything.
    """

    turn_text: str = ""
    segment: int = 0


@dataclass
class AnswerHeldFrame(SystemFrame):
    """The answer's first audio was held `held_s` while the caller seemed to start speaking, then let go (the
    voice died away): for the turn report."""

    held_s: float = 0.0


@dataclass
class HostedSpeechFailedFrame(SystemFrame):
    """Sent downstream by a hosted recogniser or voice that failed (an error, its socket closed, a rejected key):
    the local model standing by behind it takes over for the rest of the call."""

    provider: str = ""
    reason: str = ""


@dataclass
class SpeakPhraseFrame(DataFrame):
    """Asks the phrase player to say one of the pre-synthesised phrases (an apology, the goodbye): words that are
    not an answer, so they never count as one."""

    kind: PhraseKind = "apology"


@dataclass
class TurnVerdictFrame(SystemFrame):
    """Sent upstream by the LLM service when an answer's first token judged the caller's turn (END_OF_TURN_JUDGE=
    provider): on the words `text`, the caller is done (`complete`), was cut off mid-sentence and will go on
    (`cut_off`), or asked for time (`needs_time`). The end-of-turn strategy decides with it."""

    verdict: TurnVerdict = "complete"
    text: str = ""


@dataclass
class BackchannelFrame(DataFrame):
    """Pushed by the LLM service at the start of a resumed answer: the caller's words over the answer (`text`) only
    acknowledged it, or were no words at all, so it goes on where they stopped hearing it. The turn report counts it
    on the answer's turn, which it no longer calls cut."""

    text: str = ""


@dataclass
class PhraseAudioFrame(SpeechOutputAudioRawFrame):
    """Audio of a pre-synthesised phrase on its way to the caller: speech, but not the answer."""


@dataclass
class CompletionStatsFrame(DataFrame):
    """Sent downstream after each answered completion: timings, usage, provider time info and what was raced."""

    provider: str = ""
    model: str = ""
    first_token_s: float | None = None
    first_content_s: float | None = None
    reasoning_chars: int = 0
    usage: dict[str, Any] | None = None
    time_info: dict[str, Any] | None = None
    error: str | None = None
    speculative: bool = False
    hedged: bool = False
    retried: bool = False
    providers_tried: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    verdict: TurnVerdict | None = None  # the provider's judgment of the caller's turn, when it is the judge

    def __str__(self) -> str:
        return f"{self.name}(provider: {self.provider}, error: {self.error})"

    def summary(self) -> dict[str, Any]:
        """The turn report's `llm` entry."""
        summary: dict[str, Any] = {
            "provider": self.provider,
            "model": self.model,
            "speculative": self.speculative,
            "hedged": self.hedged,
            "retried": self.retried,
            "providers_tried": self.providers_tried,
            "tools": self.tools,
            "reasoning_chars": self.reasoning_chars,
        }
        if self.verdict:
            summary["verdict"] = self.verdict
        if self.first_token_s is not None:
            summary["first_token_ms"] = round(self.first_token_s * 1000, 1)
        if self.first_content_s is not None:
            summary["first_content_ms"] = round(self.first_content_s * 1000, 1)
            if self.first_token_s is not None:  # the part of the wait spent on (unspoken) reasoning tokens
                summary["reasoning_ms"] = round((self.first_content_s - self.first_token_s) * 1000, 1)
        if self.usage:
            summary["usage"] = self.usage
        if self.time_info:
            summary["time_info"] = self.time_info
        if self.error:
            summary["error"] = self.error
        return summary


@dataclass
class KeypadEntryFrame(LLMMessagesAppendFrame):
    """Digits the caller pressed on a phone's keypad, as a user message for the conversation (the user aggregator
    appends it and runs the LLM): a turn of its own, whose answer is timed from the last digit."""

    digits: str = ""
