"""A call's pipeline worker (`pipelines/voice.py` `CallWorker`) on a real pipecat pipeline: its observers see every
frame as it is first pushed, and no processor's handling of a frame is queued to them (one task wake-up per
observer per processor for every 20 ms of audio, read by none of them)."""

from __future__ import annotations

import asyncio

import pytest
from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams
from pipecat.pipeline.worker_observer import WorkerObserver
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipelines.voice import CallWorker


class Forward(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class AudioSeen(BaseObserver):
    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self.audio: list[bytes] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, InputAudioRawFrame):
            self.audio.append(data.frame.audio)


async def test_observers_see_pushes_but_are_not_sent_each_processors_handling(monkeypatch):
    queued: list[object] = []
    send = WorkerObserver._send_to_proxy

    async def recorded(self, data) -> None:
        queued.append(data)
        await send(self, data)

    monkeypatch.setattr(WorkerObserver, "_send_to_proxy", recorded)
    seen = AudioSeen()
    worker = CallWorker(Pipeline([Forward(), Forward(), Forward()]), params=PipelineParams(), observers=[seen])
    sent = [bytes([n]) * 320 for n in range(20)]

    async def feed() -> None:
        await asyncio.sleep(0.2)
        for audio in sent:
            await worker.queue_frame(InputAudioRawFrame(audio=audio, sample_rate=8000, num_channels=1))
        await asyncio.sleep(0.2)
        await worker.queue_frame(EndFrame())

    feeding = asyncio.create_task(feed())
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(runner.run(), 10)
    await feeding
    assert seen.audio == sent
    assert not [data for data in queued if isinstance(data, FrameProcessed)]


def test_an_observer_of_each_processors_handling_is_refused():
    class Processing(BaseObserver):
        async def on_process_frame(self, data: FrameProcessed) -> None:
            pass

    with pytest.raises(ValueError, match="on_process_frame"):
        CallWorker(Pipeline([Forward()]), params=PipelineParams(), observers=[Processing()])
