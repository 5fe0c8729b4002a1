"""A phone call's serializer as the pipeline sees it: the carrier's stream serializer with the call's keypad and
its end in front. Digits go to the keypad (not into the pipeline); a barge-in's clear goes to `on_clear` as it is
sent; the end of the pipeline (EndFrame: the agent ended the call; CancelFrame: the call was cut) goes, once, to
`on_end` (which hangs up through the carrier's REST API unless the call already left the agent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pipecat.frames.frames import CancelFrame, EndFrame, Frame, InputDTMFFrame, InterruptionFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.serializers.base_serializer import FrameSerializer


class PhoneLineSerializer(FrameSerializer):
    """See the module docstring."""

    def __init__(
        self,
        carrier: FrameSerializer,
        *,
        on_digit: Callable[[str], Awaitable[None]],
        on_clear: Callable[[], None],
        on_end: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__()
        self._carrier = carrier
        self._on_digit = on_digit
        self._on_clear = on_clear
        self._on_end = on_end
        self._ended = False

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await self._carrier.setup(setup)

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, (EndFrame, CancelFrame)):
            if not self._ended:
                self._ended = True
                await self._on_end()
            return None
        if isinstance(frame, InterruptionFrame):
            self._on_clear()
        return await self._carrier.serialize(frame)

    async def deserialize(self, data: str | bytes) -> Frame | None:
        frame = await self._carrier.deserialize(data)
        if isinstance(frame, InputDTMFFrame):
            await self._on_digit(frame.button.value)
            return None
        return frame
