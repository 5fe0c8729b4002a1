"""Benchmark calls: recordings built from the speech fixtures, and what a caller heard in reply, measured from the
caller's side.

`build_call()` joins fixture utterances with silence (inserting a mid-sentence pause into the ones listed in
`tests/fixtures/pauses.tsv`) and remembers where each utterance's speech is. `hear_answers()` takes the audio the
caller received and finds, for each utterance, the first sound of any reply and the onset of the *answer*: it
transcribes what was heard with word timestamps and skips the acknowledgement's words (and recognises an apology,
which is not an answer). A reply that starts inside a caller's mid-sentence pause is a false start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from agent.speech.energy import speech_spans
from agent.speech.phrases import APOLOGY
from agent.speech.whisper import WhisperTranscriber
from agent.text import words
from bench.audio import FIXTURES, load, transcripts
from pipelines.replay import write_wav

RATE = 16000
QUESTIONS = [
    "ill_disposed.wav", "amiable.wav", "dashwood.wav", "cold_hearted.wav", "respectable.wav", "ten_of_clubs.wav",
    "four_queen.wav", "seven_of_clubs.wav", "five_five.wav", "eight_of_spades.wav", "synth_tokyo.wav",
    "synth_table_for_two.wav", "synth_airport.wav", "synth_delivery.wav", "synth_pharmacy.wav", "synth_octopuses.wav",
]  # fmt: skip
PAUSED = [
    "pause:ill_disposed.wav", "pause:cold_hearted.wav", "pause:dashwood.wav", "pause:eight_of_spades.wav",
    "synth_pause_wondering.wav", "synth_pause_train.wav", "synth_pause_name.wav", "synth_pause_reschedule.wav",
]  # fmt: skip
PAUSES_S = (0.5, 0.6, 0.7)
FALSE_START_MARGIN_S = 0.3  # agent audio starting this soon after the caller goes on was still started in the pause


@dataclass
class Utterance:
    """One caller utterance inside a call: where its speech is, and the mid-sentence pause if it has one."""

    name: str
    reference: str
    start_s: float
    end_s: float
    pause: tuple[float, float] | None = None  # (first part ends, second part starts)


@dataclass
class Call:
    path: Path
    utterances: list[Utterance] = field(default_factory=list)


def build_call(path: Path, names: list[str], *, gap_s: float, lead_s: float = 0.5) -> Call:
    """A recording of `names` (a "pause:" prefix inserts a mid-sentence pause), `gap_s` of silence after each."""
    splits = dict(line.split("\t") for line in (FIXTURES / "pauses.tsv").read_text().splitlines() if line.strip())
    references = transcripts()
    pieces = [np.zeros(int(lead_s * RATE), np.int16)]
    call = Call(path)
    position = lead_s
    for index, entry in enumerate(names):
        name = entry.removeprefix("pause:")
        audio = load(name)
        if entry.startswith("pause:"):
            cut = int(float(splits[name]) * RATE)
            pause = np.zeros(int(PAUSES_S[index % len(PAUSES_S)] * RATE), np.int16)
            audio = np.concatenate([audio[:cut], pause, audio[cut:]])
        spans = speech_spans(audio.tobytes(), RATE, min_gap_s=0.45)
        gaps = [(a[1], b[0]) for a, b in zip(spans, spans[1:], strict=False) if b[0] - a[1] >= 0.45]
        utterance = Utterance(name, references[name], position + spans[0][0], position + spans[-1][1])
        if gaps and (entry.startswith("pause:") or "pause" in name):
            utterance.pause = (position + gaps[0][0], position + gaps[0][1])
        call.utterances.append(utterance)
        pieces += [audio, np.zeros(int(gap_s * RATE), np.int16)]
        position += (len(audio) + int(gap_s * RATE)) / RATE
    write_wav(path, np.concatenate(pieces).tobytes(), RATE)
    return call


def hear_answers(
    call: Call, heard: bytes, heard_rate: int, whisper: WhisperTranscriber, acknowledgement: str
) -> list[dict[str, Any]]:
    """Per utterance, from the caller's side: first sound of a reply, the answer's onset, filler and false start."""
    pcm = np.frombuffer(heard, np.int16).astype(np.float32)
    if heard_rate != RATE:
        pcm = soxr.resample(pcm, heard_rate, RATE)
    audio = pcm.clip(-32768, 32767).astype(np.int16)
    replies = [start for start, _ in speech_spans(audio.tobytes(), RATE, min_gap_s=0.25)]
    ack_words = words(acknowledgement)
    results = []
    for index, utterance in enumerate(call.utterances):
        following = call.utterances[index + 1].start_s if index + 1 < len(call.utterances) else len(audio) / RATE
        false_start = utterance.pause is not None and any(
            utterance.pause[0] < r < utterance.pause[1] + FALSE_START_MARGIN_S for r in replies
        )
        after = [r for r in replies if utterance.end_s < r < following]
        result: dict[str, Any] = {
            "utterance": utterance.name, "paused": utterance.pause is not None, "false_start": false_start,
            "first_sound_ms": None, "answer_ms": None, "filler": False, "apology": False, "heard_text": "",
        }  # fmt: skip
        if after:
            first = after[0]
            result["first_sound_ms"] = round((first - utterance.end_s) * 1000, 1)
            window = audio[int(first * RATE) : int(min(following, first + 5.0) * RATE)]
            timed = whisper.timed_words(window.tobytes(), RATE)
            said = [(w, start) for word, start, _ in timed for w in words(word)]
            result["heard_text"] = " ".join(w for w, _ in said)
            skip = 0
            while skip < len(said) and skip < len(ack_words) and said[skip][0] == ack_words[skip]:
                skip += 1
            result["filler"] = bool(ack_words) and skip >= min(2, len(ack_words))
            rest = said[skip:] if result["filler"] else said
            result["apology"] = [w for w, _ in rest[:3]] == words(APOLOGY)[:3]
            if rest and not result["apology"]:
                onset = first if not result["filler"] else first + rest[0][1]
                result["answer_ms"] = round((onset - utterance.end_s) * 1000, 1)
        results.append(result)
    return results
