"""One phone call's keypad: the digits the caller presses (DTMF), as entries for the conversation or as input a tool
is waiting for.

- Free entry: digits pressed with at most `interdigit_s` between them make one entry, ended at once by `#`; the
  entry goes to `on_entry` (the phone pipeline puts "the caller pressed 1" into the conversation). Its first digit
  goes to `on_first_digit` (the agent stops talking, as an IVR does when a key is pressed). An entry keeps at most
  `max_digits` digits (`KEYPAD_MAX_DIGITS`): the rest of a digit storm is dropped and counted (`dropped`), so a
  caller cannot push a message of thousands of digits into the conversation.
- Collection: `collect()` (the collect_digits tool: "enter your booking number, then #") takes the digits until the
  terminator, `max_digits`, or its timeout, starting with any digits of a free entry still being typed. The caller
  speaking instead (`cancel_collection()`) ends it with what was typed so far, and later digits are free entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from loguru import logger
from pipecat.frames.frames import UserStartedSpeakingFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed

Ending = Literal["terminator", "max_digits", "timeout", "caller_spoke"]
TERMINATOR = "#"


@dataclass(frozen=True)
class KeypadEntry:
    digits: str
    ended_by: Ending


class Keypad:
    """Digits of one call (see the module docstring)."""

    def __init__(
        self,
        interdigit_s: float,
        on_entry: Callable[[str], Awaitable[None]],
        on_first_digit: Callable[[], Awaitable[None]],
        max_digits: int = 32,
    ) -> None:
        self._interdigit_s = interdigit_s
        self._max_entry = max_digits
        self.dropped = 0  # digits beyond an entry's limit
        self._on_entry = on_entry
        self._on_first_digit = on_first_digit
        self._typed = ""  # the free entry being typed
        self._flush: asyncio.Task[None] | None = None
        self._collecting: asyncio.Future[KeypadEntry] | None = None
        self._collected = ""
        self._max_digits = 0

    async def press(self, digit: str) -> None:
        if self._collecting is not None and not self._collecting.done():
            if digit != TERMINATOR and len(self._collected) >= self._max_entry:
                self._drop(digit)
                return
            self._collected += digit
            if digit == TERMINATOR:
                self._collecting.set_result(KeypadEntry(self._collected[:-1], "terminator"))
            elif len(self._collected) >= self._max_digits:
                self._collecting.set_result(KeypadEntry(self._collected, "max_digits"))
            return
        first = not self._typed
        if digit != TERMINATOR and len(self._typed) >= self._max_entry:
            self._drop(digit)
            return
        self._typed += digit
        self._cancel_flush()
        if digit == TERMINATOR:
            await self._flush_entry()
            return
        if first:
            await self._on_first_digit()
        self._flush = asyncio.create_task(self._flush_after(self._interdigit_s))

    async def collect(self, max_digits: int, timeout_s: float) -> KeypadEntry:
        """The digits the caller types next (see the module docstring)."""
        if self._collecting is not None and not self._collecting.done():
            raise RuntimeError("the keypad is already collecting digits")
        self._cancel_flush()
        self._collected, self._typed, self._max_digits = self._typed, "", max_digits
        self._collecting = asyncio.get_running_loop().create_future()
        if self._collected.endswith(TERMINATOR) or len(self._collected) >= max_digits:
            ended: Ending = "terminator" if self._collected.endswith(TERMINATOR) else "max_digits"
            self._collecting.set_result(KeypadEntry(self._collected.removesuffix(TERMINATOR), ended))
        try:
            return await asyncio.wait_for(asyncio.shield(self._collecting), timeout_s)
        except TimeoutError:
            return KeypadEntry(self._collected, "timeout")
        finally:
            self._collecting = None

    def cancel_collection(self) -> None:
        """The caller spoke instead of typing: the collection ends with what was typed so far."""
        if self._collecting is not None and not self._collecting.done():
            logger.info("keypad: the caller spoke while digits were awaited; the collection ends")
            self._collecting.set_result(KeypadEntry(self._collected, "caller_spoke"))

    def close(self) -> None:
        self._cancel_flush()
        self.cancel_collection()

    def _drop(self, digit: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            logger.warning(f"keypad: an entry is at its {self._max_entry} digits; dropped {self.dropped} so far")

    def _cancel_flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    async def _flush_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._flush = None
        await self._flush_entry()

    async def _flush_entry(self) -> None:
        digits, self._typed = self._typed, ""
        if digits:
            await self._on_entry(digits)


class KeypadObserver(BaseObserver):
    """Ends a keypad collection when the caller starts a spoken turn instead."""

    def __init__(self, keypad: Keypad) -> None:
        super().__init__(observe_every_push=False)  # a turn's start is news once, not at every hop
        self._keypad = keypad

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, UserStartedSpeakingFrame):
            self._keypad.cancel_collection()
