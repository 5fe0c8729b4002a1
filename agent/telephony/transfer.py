"""The transfer to a person, the same for every carrier: the agent says TRANSFER_MESSAGE in its own voice, and
once the caller has heard it (the carrier echoed the marks after it), the carrier puts the call through to
TRANSFER_NUMBER (Twilio: the call updated with `<Dial>`; Telnyx: the `transfer` command; Plivo: the transfer API).
The number goes through DIAL_ALLOWLIST once more. A transfer that fails raises CarrierError (the transfer_call
tool tells the model, which tells the caller), and the call goes on with the agent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from agent.settings import Settings, number_allowed
from agent.telephony.marks import UtteranceMarks
from agent.telephony.rest import CallControl, CarrierError

SPEECH_HEARD_TIMEOUT_S = 10.0  # what the agent was saying before the transfer: at most this long to be heard
LINE_START_S = 1.0  # the line queued: this long for its first audio to go out
LINE_MARGIN_S = 3.0  # the line's own length plus this for the carrier to echo its last mark


class Transfer:
    """Puts one call through to TRANSFER_NUMBER (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        control: CallControl,
        marks: UtteranceMarks,
        say: Callable[[str], Awaitable[float]],
        on_transferred: Callable[[], Awaitable[None]],
    ) -> None:
        self._number = settings.transfer_number
        self._prefixes = settings.dial_prefixes
        self._message = settings.transfer_message
        self._control = control
        self._marks = marks
        self._say = say
        self._on_transferred = on_transferred

    async def put_through(self) -> dict[str, Any]:
        if not number_allowed(self._number, self._prefixes):
            raise CarrierError("transfers are not available on this line")
        await self._marks.heard(timeout_s=SPEECH_HEARD_TIMEOUT_S)
        if self._message:
            line_s = await self._say(self._message)
            if not await self._marks.heard(start_within_s=LINE_START_S, timeout_s=line_s + LINE_MARGIN_S):
                logger.warning("transfer: the line was not confirmed heard in time; putting the call through anyway")
        try:
            await self._control.transfer(self._number)
        except CarrierError as e:
            logger.error(f"transfer of call {self._control.call_id} failed: {e}")
            raise
        logger.info(f"transfer: call {self._control.call_id} put through ({self._control.carrier})")
        await self._on_transferred()
        return {"transferred": True, "note": "The caller is now with a colleague; say nothing more."}
