"""`voice-agent call`: call a server the way a carrier does (Twilio, Telnyx or Plivo), with a WAV file as the
caller. The carrier's own protocol is its dialect (`agent/telephony/<carrier>/caller.py`).

Given the server's call webhook (an http(s) URL), it first posts the webhook as that carrier does (signed, when it
holds the carrier's credential), reads the stream URL and its parameters (the call's stream token among them) from
the answer document, then opens that stream as the carrier does. Given a ws(s) stream URL, it dials the stream
directly (an unsigned server on this machine accepts that). An answer that rejects the call as busy (a full or
draining server: Twilio's and Telnyx's `<Reject reason="busy"/>`, Plivo's `<Hangup reason="busy"/>`) ends the
call there: `CallRejected`. On the stream it sends the carrier's opening, then the
recording as 20 ms `media` messages in real time (then silence, as a phone line does), keypad digits at the
times asked, plays what comes back on a simulated handset (audio queues up and plays in real time), echoes each
mark (Plivo: checkpoint) when the audio before it has played, honours `clear`, and ends as the carrier ends a
stream (`stop`, or Plivo's closing the socket). Latency is measured as the caller hears it: from the end of each
utterance in the recording to the first sound of the reply (which may be a filler such as "Let me think.";
`bench/latency.py` transcribes what was heard to find the answer).

The tests' carrier doubles use it for the callee of an outbound call too (`direction="outbound"`), and end a call
the way the carrier would after a transfer or a voicemail redirect (`hang_up`).
"""

from __future__ import annotations

import asyncio
import json
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soxr
import websockets

from agent.latency.turns import summarize
from agent.speech.energy import speech_spans
from agent.telephony import g711
from agent.telephony.dialect import FRAME_S, RATE, CallIds, CallRejected, Dialect, StreamInvite
from agent.telephony.registry import CARRIERS
from agent.telephony.twilio.caller import TwilioCaller
from pipelines.replay import read_call_wav, write_wav

FRAME_BYTES = int(RATE * FRAME_S)  # one byte a sample in G.711
NEW_REPLY_GAP_S = 0.25  # a pause longer than this between received chunks starts a new reply


def to_phone_audio(pcm: bytes, rate: int) -> bytes:
    """16-bit PCM at 16/8 kHz -> 8 kHz mu-law."""
    return g711.encode(to_phone_rate(pcm, rate), "PCMU")


def to_phone_rate(pcm: bytes, rate: int) -> bytes:
    """16-bit PCM at 16/8 kHz -> 16-bit PCM at 8 kHz."""
    if rate == RATE:
        return pcm
    samples = np.frombuffer(pcm, np.int16).astype(np.float32)
    return soxr.resample(samples, rate, RATE).clip(-32768, 32767).astype(np.int16).tobytes()


@dataclass
class Handset:
    """Plays received audio in real time on the caller's timeline; knows what was heard and when."""

    origin: float
    heard: bytearray = field(default_factory=bytearray)
    play_until: float = 0.0
    reply_starts: list[float] = field(default_factory=list)
    last_audio_at: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.origin

    def play(self, pcm: bytes) -> None:
        now = self.now()
        start = max(now, self.play_until)
        if start > self.play_until + NEW_REPLY_GAP_S or not self.reply_starts:
            self.reply_starts.append(start)  # a gap before it: a new stretch of speech begins
        position = int(start * RATE) * 2
        if position > len(self.heard):
            self.heard.extend(bytes(position - len(self.heard)))
        self.heard[position : position + len(pcm)] = pcm
        self.play_until = start + len(pcm) / 2 / RATE
        self.last_audio_at = now

    def clear(self) -> None:
        """Drop everything not played yet."""
        now = self.now()
        del self.heard[int(now * RATE) * 2 :]
        self.play_until = now


@dataclass
class PhoneCallResult:
    turns: list[dict[str, Any]]
    reply_starts: list[float]  # when each stretch of the agent's speech started, on the caller's timeline
    heard_audio: bytes
    marks_echoed: list[str]
    clears: int
    summary: dict[str, Any]
    ids: CallIds
    closed_by_server: bool
    invite: StreamInvite

    @property
    def call_sid(self) -> str:
        return self.ids.call_id

    @property
    def stream_sid(self) -> str:
        return self.ids.stream_id


def caller_for(carrier: str, **credentials: Any) -> Dialect:
    """A fresh dialect for one call (`credentials`: `auth_token`/`account_sid` for Twilio, `signing_key`/
    `account_id` for Telnyx, `auth_token`/`auth_id` for Plivo)."""
    return CARRIERS[carrier].caller(**credentials)


class CallerStream:
    """The caller's side of one open media stream: sends the recording in real time (then silence), the keypad
    digits at their times, echoes each mark once the audio before it has played on the handset, honours `clear`,
    and ends the call as the carrier does."""

    def __init__(
        self,
        ws: websockets.ClientConnection,
        line: Dialect,
        ids: CallIds,
        caller_audio: bytes,
        digits: Sequence[tuple[float, str]] = (),
    ) -> None:
        self._ws = ws
        self._line = line
        self._ids = ids
        self._audio = caller_audio  # in the codec the answer asked for
        self._digits = sorted(digits)
        self.handset = Handset(origin=time.monotonic())
        self.marks_echoed: list[str] = []
        self.clears = 0
        self._pending_marks: list[tuple[float, str]] = []  # (handset time it is heard, name)
        self._recording_done = asyncio.Event()

    async def run(self, *, hang_up: asyncio.Event | None, tail_s: float, max_tail_s: float, stop: bool) -> bool:
        """Play the call out; True when the server closed the stream (rather than the caller or the carrier)."""
        tasks = [asyncio.create_task(t()) for t in (self._echo_marks, self._send_audio, self._receive, self._keys)]
        sender, receiver = tasks[1], tasks[2]
        ended = asyncio.create_task(hang_up.wait()) if hang_up else None
        try:
            # The recording plays out, unless the server or the carrier ends the call first.
            done = asyncio.create_task(self._recording_done.wait())
            await asyncio.wait([t for t in (done, sender, receiver, ended) if t], return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            await self._hear_the_tail(receiver, ended, tail_s, max_tail_s)
            closed_by_server = receiver.done()
            if stop and not closed_by_server and (goodbye := self._line.stop(self._ids)) is not None:
                try:
                    await self._ws.send(goodbye)
                except websockets.ConnectionClosed:  # the server hung up first, just now
                    closed_by_server = True
            return closed_by_server
        finally:
            for task in [*tasks, *([ended] if ended else [])]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _hear_the_tail(
        self, receiver: asyncio.Task, ended: asyncio.Task | None, tail_s: float, max_tail_s: float
    ) -> None:
        """After the recording: stay on until the agent has been quiet `tail_s` with every mark echoed (at most
        `max_tail_s`), or the stream ends."""
        handset = self.handset
        quiet_from = handset.now()
        while handset.now() - quiet_from < max_tail_s and not receiver.done() and not (ended and ended.done()):
            await asyncio.sleep(0.05)
            quiet = handset.now() - max(handset.play_until, handset.last_audio_at, quiet_from)
            if quiet > tail_s and not self._pending_marks:
                return

    async def _echo_marks(self) -> None:
        while True:
            now = self.handset.now()
            while self._pending_marks and self._pending_marks[0][0] <= now:
                _, name = self._pending_marks.pop(0)
                self.marks_echoed.append(name)
                await self._ws.send(self._line.mark_echo(self._ids, name))
            await asyncio.sleep(0.005)

    async def _send_audio(self) -> None:
        frames = (len(self._audio) + FRAME_BYTES - 1) // FRAME_BYTES
        index = 0
        while True:
            chunk = self._audio[index * FRAME_BYTES : (index + 1) * FRAME_BYTES] if index < frames else b""
            if index == frames:
                self._recording_done.set()
            await self._ws.send(self._line.media(self._ids, chunk + self._line.silence[len(chunk) :], index))
            index += 1
            await asyncio.sleep(max(0.0, index * FRAME_S - self.handset.now()))

    async def _keys(self) -> None:
        for at, digit in self._digits:
            await asyncio.sleep(max(0.0, at - self.handset.now()))
            await self._ws.send(self._line.dtmf(self._ids, digit))

    async def _receive(self) -> None:
        async for message in self._ws:
            incoming = self._line.read(json.loads(message))
            if incoming.kind == "media":
                self.handset.play(incoming.audio)
            elif incoming.kind == "mark":
                self._pending_marks.append((self.handset.play_until, incoming.name))
                self._pending_marks.sort()
            elif incoming.kind == "clear":
                await self._clear()

    async def _clear(self) -> None:
        self.clears += 1
        self.handset.clear()
        if self._line.marks_survive_clear():  # echoed at once
            self._pending_marks[:] = [(0.0, name) for _, name in self._pending_marks]
        else:
            self._pending_marks.clear()
        if (echo := self._line.clear_echo(self._ids)) is not None:
            await self._ws.send(echo)


async def place_call(
    wav: str | Path,
    url: str,
    *,
    dialect: Dialect | None = None,
    ids: CallIds | None = None,
    auth_token: str = "",
    account_sid: str = "",
    direction: str = "inbound",
    digits: Sequence[tuple[float, str]] = (),
    hang_up: asyncio.Event | None = None,
    tail_s: float = 2.0,
    max_tail_s: float = 25.0,
    stop: bool = True,
) -> PhoneCallResult:
    """Place a call to `url`: the server's webhook (http/https) or its stream (ws/wss), see the module docstring.
    Without a `dialect`, the call is Twilio's (signed with `auth_token` when given); `ids` are the call's ids (new
    ones by default). `digits` are (seconds into the call, key) pairs; setting `hang_up` ends the stream as the
    carrier does when the call leaves the agent."""
    pcm, rate = read_call_wav(wav)
    line = dialect or TwilioCaller(auth_token, account_sid)
    ids = ids or line.new_ids()
    invite = StreamInvite(url)
    if url.startswith(("http://", "https://")):
        invite = await line.invite(url, ids, direction)
    headers = line.upgrade_headers(invite.url)
    async with websockets.connect(invite.url, max_size=2**20, additional_headers=headers) as ws:
        for message in line.opening(ids, invite):
            await ws.send(message)
        stream = CallerStream(ws, line, ids, line.encode(to_phone_rate(pcm, rate)), digits)
        closed_by_server = await stream.run(hang_up=hang_up, tail_s=tail_s, max_tail_s=max_tail_s, stop=stop)

    handset = stream.handset
    turns = pair_replies(speech_spans(pcm, rate), handset.reply_starts)
    latencies = [t["first_sound_ms"] for t in turns if t["first_sound_ms"] is not None]
    return PhoneCallResult(
        turns=turns,
        reply_starts=handset.reply_starts,
        heard_audio=bytes(handset.heard),
        marks_echoed=stream.marks_echoed,
        clears=stream.clears,
        summary=summarize(latencies),
        ids=ids,
        closed_by_server=closed_by_server,
        invite=invite,
    )


def pair_replies(utterances: list[tuple[float, float]], reply_starts: list[float]) -> list[dict[str, Any]]:
    """Pair each utterance with the first reply that starts after it ends (and before the next one ends)."""
    turns = []
    for i, (start, end) in enumerate(utterances):
        limit = utterances[i + 1][1] if i + 1 < len(utterances) else float("inf")
        reply = next((r for r in reply_starts if end < r < limit), None)
        turns.append(
            {
                "turn": i + 1,
                "speech_start_s": round(start, 2),
                "speech_end_s": round(end, 2),
                "reply_start_s": None if reply is None else round(reply, 3),
                "first_sound_ms": None if reply is None else round((reply - end) * 1000, 1),
            }
        )
    return turns


async def call_unless_rejected(wav: str | Path, url: str, **options: Any) -> PhoneCallResult | None:
    """`place_call`, or None when the server's answer rejects the call (busy)."""
    try:
        return await place_call(wav, url, **options)
    except CallRejected:
        return None


async def run_call(
    wav: Path,
    url: str,
    dialect: Dialect,
    *,
    digits: Sequence[tuple[float, str]] = (),
    out: Path | None = None,
    report: Path | None = None,
) -> int:
    """`voice-agent call`: place the call, print each turn's latency as heard, write what was heard."""
    try:
        result = await place_call(wav, url, dialect=dialect, digits=digits)
    except CallRejected as e:
        print(e)
        return 1
    except (websockets.exceptions.WebSocketException, httpx.HTTPError, ElementTree.ParseError) as e:
        raise RuntimeError(f"cannot call {url}: {e}") from None
    for turn in result.turns:
        latency = turn["first_sound_ms"]
        heard = "no reply heard" if latency is None else f"first sound of the reply after {latency:.0f} ms"
        print(f"turn {turn['turn']}: caller spoke {turn['speech_start_s']:.1f}-{turn['speech_end_s']:.1f} s, {heard}")
    s = result.summary
    if s["count"]:
        print(f"{s['count']} turns: p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms, max {s['max_ms']:.0f} ms")
    print(f"marks echoed: {len(result.marks_echoed)}, clears: {result.clears}")
    if report:
        report.write_text(json.dumps({"turns": result.turns, "summary": s}, indent=2))
    if out:
        write_wav(out, result.heard_audio, RATE)
    return 0
