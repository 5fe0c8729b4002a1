"""The turn-taking benchmark's decision points: moments where the agent must decide whether the caller is done.

Each utterance gives one **end** (the whole utterance, then silence: the agent should answer at once) and, where its
text marks one with `|`, **pauses**: the utterance cut at that word boundary, with 0.3-1.0 s of silence inserted
before it goes on (the agent must not speak into it). Marks sit where the sentence is not finished: after "to",
"and", "the", a verb that needs its object, a number that continues.

Speech comes first from real recordings (Debian's `pocketsphinx-testdata`: LibriVox, cards, digits, commands; and
`alsa-utils`' spoken channel names as short replies), then from the two local voices (Piper's en_US joe, Hibari)
reading sentences written for a phone agent. The cut is made at a quiet point near the word boundary (Whisper's word
timestamps say where to look) whose audio before it Whisper hears as exactly the words before the mark, the inserted
silence carries the recording's own noise floor, and every point is
played through the phone line: 8 kHz G.711 mu-law, as a caller on Twilio, Telnyx or Plivo is heard.

Points are split into a tuning half and a report half by utterance text (both voices of a sentence, and all cuts of
an utterance, land in the same half), so a rule tuned on one half is reported on words it never saw.
"""

from __future__ import annotations

import hashlib
import random
import re
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soxr
from num2words import num2words

from agent.speech.whisper import WhisperTranscriber
from agent.text import words

PHONE_RATE = 8000
SOURCE_RATE = 16000
PSDATA = Path("/usr/share/pocketsphinx/test/data")
ALSA = Path("/usr/share/sounds/alsa")
PAUSE_S = (0.3, 1.0)
END_SILENCE_S = 2.0
LEAD_S = 0.3
CUT_SEARCH_S = 0.3  # how far from Whisper's word boundary a cut is looked for
MAX_CUTS_TRIED = 8
SYNTH_NOISE_RMS = 12.0  # a quiet line's hiss under the synthetic voices (16-bit RMS)

Half = Literal["tuning", "report"]
Kind = Literal["pause", "end"]

HOW_CAN_I_HELP = "Hello! How can I help you today?"
CARD = "Which card did you draw?"
NUMBER = "What is the number, please?"
SPEAKER = "Which speaker should I test?"
CONFIRM = "I have you down for Friday at ten. Is that right?"
NAME = "Can I have your name, please?"

# Real recordings: (file, text with | marks, the agent's words before it).
RECORDED: list[tuple[str, str, str]] = [
    ("librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
     "and mister john dashwood had then leisure to | consider how much there might be prudently in his | power to "
     "do for them", HOW_CAN_I_HELP),
    ("librivox/sense_and_sensibility_01_austen_64kb-0880.wav", "he was not an | ill disposed young man",
     HOW_CAN_I_HELP),
    ("librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
     "unless to be rather cold hearted and | rather selfish is to | be ill disposed", HOW_CAN_I_HELP),
    ("librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
     "had he married a more a | amiable woman he might have been made still | more respectable than he was",
     HOW_CAN_I_HELP),
    ("librivox/sense_and_sensibility_01_austen_64kb-0930.wav", "he might even have | been made amiable himself",
     HOW_CAN_I_HELP),
    ("cards/001.wav", "ten of | clubs", CARD),
    ("cards/002.wav", "four queen of | clubs", CARD),
    ("cards/003.wav", "seven of | clubs", CARD),
    ("cards/004.wav", "five five", NUMBER),
    ("cards/005.wav", "eight of | spades four of | clubs seven of | hearts", CARD),
    ("goforward.raw", "go forward | ten meters", "Where should the robot go?"),
    ("something.raw", "go somewhere and | do something", "What should I do now?"),
    ("tidigits/dhd.2934z.raw", "two nine three four zero", NUMBER),
    *((f"alsa:{name}", name.lower().replace("_", " "), SPEAKER)
      for name in ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left",
                   "Side_Right")),
]  # fmt: skip

# Sentences for the local voices: what callers say to a phone agent, with the pause where they hesitate.
SYNTHETIC: list[tuple[str, str]] = [
    ("I need to | reschedule my appointment for Friday.", HOW_CAN_I_HELP),
    ("Can you put | my name on the waiting list?", HOW_CAN_I_HELP),
    ("I was wondering if you could help me with | my order.", HOW_CAN_I_HELP),
    ("What time does the pharmacy on Main Street | close on Sundays?", HOW_CAN_I_HELP),
    ("I would like to book a table for | two at seven thirty tonight.", HOW_CAN_I_HELP),
    ("My name is John Smith and | I have a question about my bill.", HOW_CAN_I_HELP),
    ("Can you tell me when the | next train to Boston leaves?", HOW_CAN_I_HELP),
    ("I want to cancel the | subscription I signed up for last month.", HOW_CAN_I_HELP),
    ("Could you send the invoice to | my work email instead?", HOW_CAN_I_HELP),
    ("I'm calling because my package was supposed to | arrive yesterday.", HOW_CAN_I_HELP),
    ("Is there a way to | change the delivery address?", HOW_CAN_I_HELP),
    ("How much does it cost to | upgrade to the premium plan?", HOW_CAN_I_HELP),
    ("I'd like to speak to someone about | a refund.", HOW_CAN_I_HELP),
    ("My account number is four seven | two nine one.", "What is your account number?"),
    ("The card ends in five | five three two.", "What are the last four digits of the card?"),
    ("We are a party of | six people.", "How many people will be dining?"),
    ("Please book it for the | fourteenth of March.", "Which date would you like?"),
    ("I think the problem started when I | updated the app.", "What seems to be the problem?"),
    ("Do you have any rooms available for | next weekend?", HOW_CAN_I_HELP),
    ("Can I pay with | a credit card over the phone?", HOW_CAN_I_HELP),
    ("I lost my password and | I can't log in.", HOW_CAN_I_HELP),
    ("The heating in my apartment | stopped working this morning.", HOW_CAN_I_HELP),
    ("Could you remind me what | my balance is?", HOW_CAN_I_HELP),
    ("I'm looking for a | gluten free bakery near the station.", HOW_CAN_I_HELP),
    ("Would it be possible to | move my flight to Tuesday?", HOW_CAN_I_HELP),
    ("My daughter has a fever and | I need an appointment today.", HOW_CAN_I_HELP),
    ("The order number is | B as in boy seven seven one.", "What is the order number?"),
    ("I'd rather have the | window seat if there is one.", "Do you have a seating preference?"),
    ("Yes, but only if the | price stays the same.", "Shall I go ahead with the upgrade?"),
    ("No, I was hoping to | come in earlier than that.", CONFIRM),
    ("Tell me a fun fact about | octopuses.", HOW_CAN_I_HELP),
    ("What is the weather going to be like in | Chicago tomorrow?", HOW_CAN_I_HELP),
    ("How far is the airport from the | city centre?", HOW_CAN_I_HELP),
    ("I'm not sure whether I should | renew my lease or move out.", HOW_CAN_I_HELP),
    ("Can you check if my | prescription is ready?", HOW_CAN_I_HELP),
    ("The man at the counter told me to | call this number.", HOW_CAN_I_HELP),
    ("I need a taxi from the | central station to the hospital.", HOW_CAN_I_HELP),
    ("Could you spell the name of the | street for me?", "The office is on Wrexham Street."),
    ("It's under the name of | Maria Gonzalez.", "Whose name is the booking under?"),
    ("I'd like two large pizzas with | extra cheese.", "What would you like to order?"),
    ("My phone number is five five five | zero one nine two.", "What is the best number to reach you?"),
    ("We'll be arriving around | nine in the evening.", "What time will you arrive?"),
    ("Is it possible to get a | copy of my last statement?", HOW_CAN_I_HELP),
    ("Please transfer me to | the billing department.", HOW_CAN_I_HELP),
    ("Why was I charged twice for | the same order?", HOW_CAN_I_HELP),
    ("I'd like to order a | large coffee with oat milk.", "What can I get for you?"),
    ("Can you help me find | a plumber who works on weekends?", HOW_CAN_I_HELP),
    ("My flight was cancelled and | I need to get home tonight.", HOW_CAN_I_HELP),
    ("I need to book a | cleaning for the whole apartment.", HOW_CAN_I_HELP),
    ("The address is twenty | two Baker Street.", "What is the delivery address?"),
    ("I'm trying to reach the | pharmacy department.", HOW_CAN_I_HELP),
    ("Could you tell me if the | museum is open on Mondays?", HOW_CAN_I_HELP),
    ("I would like to return | the shoes I bought last week.", HOW_CAN_I_HELP),
    ("We need a table for | four people at eight.", "How can I help with your reservation?"),
    ("The package was left at | the wrong door.", HOW_CAN_I_HELP),
    ("My internet has been slow since | Monday night.", HOW_CAN_I_HELP),
    ("I want to add my | wife to the account.", HOW_CAN_I_HELP),
    ("Is it too late to | change my order?", HOW_CAN_I_HELP),
    ("Please let the doctor know that | the swelling has gone down.", HOW_CAN_I_HELP),
    ("I'm calling about the | job posting for a driver.", HOW_CAN_I_HELP),
    ("How long does it take to | get a new passport?", HOW_CAN_I_HELP),
    ("I forgot to mention that | I have a dog.", "Your booking is confirmed for two nights."),
    ("The meeting was moved to | Thursday afternoon.", HOW_CAN_I_HELP),
    ("Can you make sure the | driver calls me when he arrives?", HOW_CAN_I_HELP),
    ("I'd prefer something closer to | the beach.", "I found a hotel in the old town."),
    ("My son needs a | ride to school tomorrow.", HOW_CAN_I_HELP),
    ("We were charged for | three nights instead of two.", HOW_CAN_I_HELP),
    ("Do you know if there is | parking near the venue?", HOW_CAN_I_HELP),
    ("I'll need an invoice with | my company name on it.", HOW_CAN_I_HELP),
    ("The code they sent me is | eight four one six.", "What is the verification code?"),
    ("I'm allergic to | peanuts and shellfish.", "Do you have any allergies?"),
    ("Could I get a | refund instead of a voucher?", HOW_CAN_I_HELP),
    ("I would like to know | the opening hours for the holidays.", HOW_CAN_I_HELP),
    ("There is water leaking from | the ceiling in the kitchen.", HOW_CAN_I_HELP),
    ("Send the documents to | my home address.", "Where should we send the documents?"),
    ("Yes.", "Would you like a receipt?"),
    ("Three.", "How many tickets?"),
    ("Thursday at noon.", "When would you like to come in?"),
    ("Emily Clark.", NAME),
    ("Visa.", "Which card would you like to use?"),
    ("Eight four one six.", "What is the verification code?"),
    ("Nope, that's all.", "Is there anything else I can help with?"),
    ("Window seat.", "Window or aisle?"),
    # Short replies: the whole turn is a few words, and the agent should answer at once.
    ("Yes.", CONFIRM),
    ("No.", CONFIRM),
    ("Yes, please.", "Would you like me to send a confirmation text?"),
    ("No, thank you.", "Is there anything else I can help with?"),
    ("That's right.", CONFIRM),
    ("Five five.", "What is your room number?"),
    ("Ten of clubs.", CARD),
    ("Four two seven.", "What are the three digits on the back of the card?"),
    ("Seven thirty.", "What time would you like the table?"),
    ("Tomorrow morning.", "When would you like the technician to come?"),
    ("John Smith.", NAME),
    ("Sarah.", NAME),
    ("Two adults.", "How many guests?"),
    ("Friday.", "Which day suits you?"),
    ("The second one.", "Would you like the first or the second option?"),
    ("Sure.", "Can I put you on hold for a moment?"),
    ("Okay, thanks.", "Your booking is confirmed."),
    ("Nine one one zero four.", "What is your zip code?"),
    ("Blue.", "Which colour would you like?"),
    ("Not really.", "Is there anything else?"),
    ("Go ahead.", "May I read the details back to you?"),
    ("Hello?", "Sorry, I didn't catch that."),
    ("Cash.", "Will you pay by card or cash?"),
    ("Room four twelve.", "Which room are you in?"),
]


@dataclass
class Utterance:
    """One recorded or synthesised utterance, 16 kHz, with its words and where to cut it."""

    key: str
    source: str  # "recorded", "piper", "hibari"
    text: str  # with | marks
    context: str
    audio: np.ndarray  # int16, SOURCE_RATE

    @property
    def half(self) -> Half:
        digest = hashlib.sha256(" ".join(words(self.text.replace("|", " "))).encode()).digest()
        return "tuning" if digest[0] % 2 == 0 else "report"

    @property
    def marks(self) -> list[int]:
        """Word counts after which the text marks a pause."""
        counts, said = [], 0
        for part in self.text.split("|")[:-1]:
            said += len(words(part))
            counts.append(said)
        return counts


@dataclass
class DecisionPoint:
    """The agent's decision at one moment: phone-line audio up to it and on, and what the right answer is.

    For a pause, the caller stops at `speech_end_s` and goes on at `resume_s`; for an end, they never go on."""

    key: str
    kind: Kind
    source: str
    half: Half
    said: str  # the words spoken before the decision (the whole utterance for an end)
    context: str
    audio: np.ndarray  # int16 at PHONE_RATE, G.711 mu-law decoded
    speech_end_s: float
    resume_s: float | None
    short: bool  # a reply of at most three words

    @property
    def pause_s(self) -> float | None:
        return None if self.resume_s is None else self.resume_s - self.speech_end_s


def read_recorded(name: str) -> np.ndarray:
    """A recording as int16 at SOURCE_RATE."""
    path = ALSA / f"{name[5:]}.wav" if name.startswith("alsa:") else PSDATA / name
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2")
    with wave.open(str(path), "rb") as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        if w.getnchannels() > 1:
            audio = audio.reshape(-1, w.getnchannels())[:, 0]
        rate = w.getframerate()
    return _resample(audio, rate, SOURCE_RATE)


def utterances(voices: dict[str, object]) -> Iterator[Utterance]:
    """The recorded utterances that are installed, then each synthetic sentence in each voice."""
    for name, text, context in RECORDED:
        path = ALSA / f"{name[5:]}.wav" if name.startswith("alsa:") else PSDATA / name
        if path.exists():
            yield Utterance(f"rec:{name}", "recorded", text, context, read_recorded(name))
    rng = np.random.default_rng(7)
    for voice_name, voice in voices.items():
        for text, context in SYNTHETIC:
            pcm = b"".join(voice.synthesize(text.replace("|", " ")))  # type: ignore[attr-defined]
            audio = _resample(np.frombuffer(pcm, np.int16), voice.sample_rate, SOURCE_RATE)  # type: ignore[attr-defined]
            audio = audio + rng.normal(0, SYNTH_NOISE_RMS, len(audio))
            audio = np.clip(audio, -32768, 32767).astype(np.int16)
            yield Utterance(f"{voice_name}:{text}", voice_name, text, context, audio)


def decision_points(utterance: Utterance, whisper: WhisperTranscriber, rng: random.Random) -> list[DecisionPoint]:
    """The utterance's end, and a pause at each mark where a cut can be found that Whisper hears as exactly the
    words before the mark (its word timestamps alone are too rough on short words: a cut inside "clubs" leaves
    "cl", which Whisper completes)."""
    audio = utterance.audio
    floor = _noise_floor(audio)
    spoken = words(utterance.text.replace("|", " "))
    end = _last_speech_s(audio)
    points = [_point(utterance, "end", " ".join(spoken), audio[: int((end + 0.05) * SOURCE_RATE)], None, floor, rng)]
    marks = utterance.marks
    if not marks:
        return points
    timed = whisper.timed_words(audio.tobytes(), SOURCE_RATE)
    for count in marks:
        guess = timed[min(count, len(timed)) - 1][2] if timed else end / 2
        cut = _cut_after(audio, spoken[:count], guess, whisper)
        if cut is None:
            continue
        pause = rng.uniform(*PAUSE_S)
        points.append(
            _point(utterance, "pause", " ".join(spoken[:count]), audio[:cut], (pause, audio[cut:]), floor, rng)
        )
    return points


def _cut_after(audio: np.ndarray, expected: list[str], guess_s: float, whisper: WhisperTranscriber) -> int | None:
    """The quietest point near `guess_s` whose audio before it Whisper hears as ending on the last `expected` word
    (and about as many words: a misheard word earlier on does not move the boundary)."""
    want = spelled(" ".join(expected))
    for cut in _valleys(audio, guess_s - CUT_SEARCH_S, guess_s + CUT_SEARCH_S)[:MAX_CUTS_TRIED]:
        heard = spelled(whisper.transcribe(audio[:cut].tobytes(), SOURCE_RATE))
        if heard and heard[-1] == want[-1] and abs(len(heard) - len(want)) <= 2:
            return cut
    return None


def spelled(text: str) -> list[str]:
    """Words with numbers spelled out ("10 of clubs" and "ten of clubs" are the same words)."""
    text = re.sub(r"\d+", lambda m: " " + num2words(int(m.group())) + " ", text.lower())
    return words(re.sub(r"[-,]", " ", text))


def _point(
    utterance: Utterance,
    kind: Kind,
    said: str,
    before: np.ndarray,
    goes_on: tuple[float, np.ndarray] | None,
    floor: float,
    rng: random.Random,
) -> DecisionPoint:
    noise = np.random.default_rng(rng.randrange(2**32))
    lead = (noise.normal(0, floor, int(LEAD_S * SOURCE_RATE))).astype(np.int16)
    speech_end = LEAD_S + _last_speech_s(before)
    silence_s = goes_on[0] if goes_on else END_SILENCE_S
    gap = noise.normal(0, floor, int(silence_s * SOURCE_RATE)).astype(np.int16)
    pieces = [lead, before, gap] + ([goes_on[1]] if goes_on else [])
    resume = None
    if goes_on:
        resume = LEAD_S + len(before) / SOURCE_RATE + silence_s + _first_speech_s(goes_on[1])
    audio = phone_line(np.concatenate(pieces))
    return DecisionPoint(
        key=f"{utterance.key}@{kind}:{len(said.split())}",
        kind=kind,
        source=utterance.source,
        half=utterance.half,
        said=said,
        context=utterance.context,
        audio=audio,
        speech_end_s=speech_end,
        resume_s=resume,
        short=kind == "end" and len(said.split()) <= 3,
    )


def phone_line(audio: np.ndarray) -> np.ndarray:
    """16 kHz speech as the agent hears it on a phone call: 8 kHz, G.711 mu-law."""
    narrow = _resample(audio, SOURCE_RATE, PHONE_RATE).astype(np.float64) / 32768.0
    mu = 255.0
    encoded = np.sign(narrow) * np.log1p(mu * np.abs(narrow)) / np.log1p(mu)
    quantised = np.round(encoded * 127) / 127  # 8 bits: sign and 7 of magnitude
    decoded = np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu
    return np.clip(decoded * 32768, -32768, 32767).astype(np.int16)


def _resample(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return audio.astype(np.int16)
    out = soxr.resample(audio.astype(np.float32), rate, to, quality="HQ")
    return np.clip(out, -32768, 32767).astype(np.int16)


def _frame_rms(audio: np.ndarray, frame: int) -> np.ndarray:
    n = len(audio) // frame
    x = audio[: n * frame].astype(np.float64).reshape(n, frame)
    return np.sqrt((x * x).mean(axis=1))


def _noise_floor(audio: np.ndarray) -> float:
    rms = _frame_rms(audio, SOURCE_RATE // 50)
    return float(max(4.0, np.percentile(rms, 5))) if len(rms) else 4.0


def _speech_frames(audio: np.ndarray) -> np.ndarray:
    rms = _frame_rms(audio, SOURCE_RATE // 100)
    if not len(rms):
        return rms.astype(bool)
    return rms > max(150.0, 0.06 * float(rms.max()), 3 * _noise_floor(audio))


def _last_speech_s(audio: np.ndarray) -> float:
    loud = np.flatnonzero(_speech_frames(audio))
    return float((loud[-1] + 1) / 100) if len(loud) else len(audio) / SOURCE_RATE


def _first_speech_s(audio: np.ndarray) -> float:
    loud = np.flatnonzero(_speech_frames(audio))
    return float(loud[0] / 100) if len(loud) else 0.0


def _valleys(audio: np.ndarray, start_s: float, end_s: float) -> list[int]:
    """Sample indices of the local minima of 10 ms energy between two moments, quietest first."""
    hop = SOURCE_RATE // 200  # 5 ms
    lo = max(0, int(start_s * SOURCE_RATE))
    hi = min(len(audio), int(end_s * SOURCE_RATE))
    rms = _frame_rms(audio[lo:hi], hop)
    if len(rms) < 3:
        return []
    energy = rms[:-1] + rms[1:]  # 10 ms windows
    minima = [i for i in range(1, len(energy) - 1) if energy[i] <= energy[i - 1] and energy[i] <= energy[i + 1]]
    return [lo + i * hop + hop for i in sorted(minima, key=lambda i: energy[i])]
