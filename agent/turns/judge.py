"""The provider as the judge of the caller's turn: pipecat's turn-completion markers, read off the answer's start.

With END_OF_TURN_JUDGE=provider the system prompt carries pipecat's turn-completion protocol
(`pipecat.turns.user_turn_completion_mixin`): every answer opens with ● (the caller is done; the answer follows),
◐ (cut off mid-sentence; they will go on) or ○ (they asked for time). The speculative request that goes out at the
VAD stop thus says in its first token whether the turn is over. The LLM service reads the marker (`MarkerReader`)
and tells the end-of-turn strategy (`TurnVerdictFrame`): on ● the turn ends as soon as the shortest wait allows; on
◐ / ○ the answer is withdrawn and the strategy waits on. A caller who then stays silent that long has their turn
ended, and the model, asked again, gets pipecat's re-prompt: it gently invites them to go on.

Only a capable model follows the protocol (the remote platforms); a model that answers without a marker is heard
as it is, and counted as having judged the turn complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loguru import logger
from pipecat.turns.user_turn_completion_mixin import UserTurnCompletionConfig

from agent.frames import TurnVerdict
from agent.settings import Settings


@dataclass(frozen=True)
class ProviderJudge:
    """The markers, the instructions that ask for them, and how long each "not done yet" verdict is waited out."""

    cut_off_wait_s: float
    needs_time_wait_s: float
    config: UserTurnCompletionConfig = field(default_factory=UserTurnCompletionConfig)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderJudge | None:
        """The judge END_OF_TURN_JUDGE asks for, or None when the turn is decided on this machine."""
        if settings.end_of_turn_judge != "provider":
            return None
        return cls(
            cut_off_wait_s=settings.end_of_turn_cut_off_wait_ms / 1000,
            needs_time_wait_s=settings.end_of_turn_needs_time_wait_ms / 1000,
        )

    def system_prompt(self, prompt: str) -> str:
        """The agent's system prompt with the turn-completion protocol after it."""
        return f"{prompt}\n{self.config.completion_instructions}"

    def wait_s(self, verdict: TurnVerdict) -> float:
        """Silence to wait for after a verdict before the turn ends anyway."""
        return {"cut_off": self.cut_off_wait_s, "needs_time": self.needs_time_wait_s}.get(verdict, 0.0)

    def reprompt(self, verdict: TurnVerdict) -> str:
        """What the model is asked when a caller it judged unfinished has stayed silent: invite them to go on."""
        return self.config.long_prompt if verdict == "needs_time" else self.config.short_prompt

    def reader(self) -> MarkerReader:
        return MarkerReader(self.config)


class MarkerReader:
    """Reads the verdict off the start of one answer's text stream, and passes on only what is to be spoken."""

    def __init__(self, config: UserTurnCompletionConfig) -> None:
        self._markers: dict[str, TurnVerdict] = {
            config.complete_marker: "complete",
            config.incomplete_short_marker: "cut_off",
            config.incomplete_long_marker: "needs_time",
        }
        self._head = ""  # text before the first character that is not a space
        self.verdict: TurnVerdict | None = None
        self._after_marker = False  # strip the space between the marker and the answer

    @property
    def decided(self) -> bool:
        return self.verdict is not None

    def feed(self, text: str) -> str:
        """The part of `text` to speak: nothing before the verdict, nothing after a "not done yet" one."""
        if self.verdict is None:
            self._head += text
            head = self._head.lstrip()
            if not head:
                return ""
            marker = self._markers.get(head[0])
            if marker is None:
                logger.warning("LLM: the answer opened without a turn-completion marker; speaking it as it is")
                self.verdict = "complete"
                return self._head
            self.verdict = marker
            self._after_marker = True
            text = head[1:]
        if self.verdict != "complete":
            return ""
        if self._after_marker:
            text = text.lstrip()
            self._after_marker = not text
        return text
