"""The caller's audio in batches while their line is quiet: fewer frames through the pipeline when no one speaks.

A phone stream sends 50 frames a second whether anyone speaks or not, and each one crosses the input transport's
queue, the VAD, the STT and the user aggregator (each a processor hop, shown to every observer). Most of a call is
silence. Once the line has been quiet for `after_s` (longer than any end-of-turn wait, so no turn is being timed
in frames one by one), `QuietLineBatcher` holds the quiet frames and lets them go `batch_s` at a time, in order, as
one frame. The first frame loud enough to be speech goes at once, with what was held before it: the caller's words
are never late (and at most `batch_s` of quiet is still held when the call ends). Quiet is an absolute level
(`NEVER_SPEECH_RMS`), not the line's own noise: a hissing line is never held.
"""

from __future__ import annotations

from pipecat.frames.frames import InputAudioRawFrame

from agent.pcm import rms

NEVER_SPEECH_RMS = 80.0  # 16-bit RMS: audio quieter than this is never speech (the VAD's floor too)


class QuietLineBatcher:
    """Holds the frames of a quiet line and releases them `batch_s` at a time; speech is released at once."""

    def __init__(self, *, after_s: float, batch_s: float = 0.1) -> None:
        self._after_s = after_s
        self._batch_s = batch_s
        self._quiet = 0  # samples: the line has been quiet this long
        self._held: list[InputAudioRawFrame] = []
        self._held_samples = 0

    def add(self, frame: InputAudioRawFrame) -> InputAudioRawFrame | None:
        """The frame to push for `frame` (it, or a batch ending with it), or None while it is held."""
        if rms(frame.audio) >= NEVER_SPEECH_RMS:
            self._quiet = 0
            return self._release(frame)
        quiet_before, self._quiet = self._quiet, self._quiet + frame.num_frames
        if quiet_before < self._after_s * frame.sample_rate and not self._held:
            return frame
        self._held.append(frame)
        self._held_samples += frame.num_frames
        if self._held_samples < round(self._batch_s * frame.sample_rate):
            return None
        return self._release()

    def _release(self, frame: InputAudioRawFrame | None = None) -> InputAudioRawFrame | None:
        frames = [*self._held, *([frame] if frame else [])]
        self._held, self._held_samples = [], 0
        if len(frames) <= 1:
            return frames[0] if frames else None
        first = frames[0]
        batch = InputAudioRawFrame(
            audio=b"".join(f.audio for f in frames), sample_rate=first.sample_rate, num_channels=first.num_channels
        )
        batch.transport_source = first.transport_source
        return batch
