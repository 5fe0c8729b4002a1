"""`voice-agent call`: dial a server over Twilio Media Streams the way Twilio does, with a WAV file as the caller.

Given the server's webhook (an http(s) URL), it first posts the incoming-call webhook as Twilio does (signed with
the auth token, when given one), reads the stream URL and `<Parameter>`s from the TwiML, then opens that stream
with a signed upgrade and the parameters (the call's stream token among them) in `start`. Given a ws(s) stream URL,
it dials the stream directly (an unsigned server on this machine accepts that). A webhook answering
`<Reject reason="busy"/>` (a full or draining server) ends the call there: `CallRejected`. On the stream it sends
`connected` and `start`, then the recording as 20 ms mu-law `media` messages in real time (then
silence, as a phone line does), plays what comes back on a simulated handset (audio queues up and plays in real
time), echoes each `mark` when the audio before it has played, honours `clear`, and ends with `stop`. Latency is
measured as the caller hears it: from the end of each utterance in the recording to the first sound of the reply
(which may be a filler such as "Let me think."; `bench/latency.py` transcribes what was heard to find the answer).
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import time
import uuid
import wave
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soxr
import websockets

from agent.latency.turns import summarize
from agent.speech.energy import speech_spans
from agent.telephony.twilio import MEDIA_FORMAT, TWILIO_RATE, mark_message, twilio_signature
from pipelines.replay import read_call_wav

FRAME_S = 0.02
FRAME_BYTES = int(TWILIO_RATE * FRAME_S)  # mu-law: one byte a sample
SILENCE = b"\xff" * FRAME_BYTES
NEW_REPLY_GAP_S = 0.25  # a pause longer than this between received chunks starts a new reply
TEST_ACCOUNT_SID = "AC" + "0" * 32
MAX_TWIML_BYTES = 64 * 1024


def to_phone_audio(pcm: bytes, rate: int) -> bytes:
    """16-bit PCM at 16/8 kHz -> 8 kHz mu-law."""
    if rate != TWILIO_RATE:
        samples = np.frombuffer(pcm, np.int16).astype(np.float32)
        pcm = soxr.resample(samples, rate, TWILIO_RATE).clip(-32768, 32767).astype(np.int16).tobytes()
    return audioop.lin2ulaw(pcm, 2)


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
        position = int(start * TWILIO_RATE) * 2
        if position > len(self.heard):
            self.heard.extend(bytes(position - len(self.heard)))
        self.heard[position : position + len(pcm)] = pcm
        self.play_until = start + len(pcm) / 2 / TWILIO_RATE
        self.last_audio_at = now

    def clear(self) -> None:
        """Drop everything not played yet."""
        now = self.now()
        del self.heard[int(now * TWILIO_RATE) * 2 :]
        self.play_until = now


@dataclass
class PhoneCallResult:
    turns: list[dict[str, Any]]
    heard_audio: bytes
    marks_echoed: list[str]
    clears: int
    summary: dict[str, Any]
    stream_sid: str
    call_sid: str
    closed_by_server: bool


@dataclass
class StreamInvite:
    """What the webhook's TwiML tells Twilio: where the stream goes and the parameters `start` must carry."""

    url: str
    parameters: dict[str, str]


class CallRejected(RuntimeError):
    """The webhook's TwiML rejected the call (`<Reject reason="busy"/>`): the caller hears a busy tone."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the server rejected the call: {reason}")
        self.reason = reason


async def answer_webhook(webhook_url: str, call_sid: str, account_sid: str, auth_token: str = "") -> StreamInvite:
    """Post Twilio's incoming-call webhook (signed when given the auth token) and read the TwiML's `<Stream>`;
    CallRejected when the TwiML rejects the call instead."""
    form = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "+15550100000",
        "To": "+15550100001",
    }
    headers = {"X-Twilio-Signature": twilio_signature(auth_token, webhook_url, form)} if auth_token else {}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(webhook_url, data=form, headers=headers)
    if response.status_code != 200 or len(response.content) > MAX_TWIML_BYTES:
        raise RuntimeError(f"the webhook {webhook_url} answered {response.status_code}: {response.text[:120]}")
    twiml = ElementTree.fromstring(response.content)
    if (reject := twiml.find("./Reject")) is not None:
        raise CallRejected(reject.get("reason", "rejected"))
    stream = twiml.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise RuntimeError(f"the webhook answered without a <Connect><Stream>: {response.text[:200]}")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return StreamInvite(url=stream.get("url", ""), parameters=parameters)


async def place_call(
    wav: str | Path,
    url: str,
    *,
    auth_token: str = "",
    account_sid: str = TEST_ACCOUNT_SID,
    tail_s: float = 2.0,
    max_tail_s: float = 25.0,
    stop: bool = True,
) -> PhoneCallResult:
    """Place a call to `url`: the server's webhook (http/https) or its stream (ws/wss), see the module docstring."""
    pcm, rate = read_call_wav(wav)
    caller = to_phone_audio(pcm, rate)
    stream_sid, call_sid = f"MZ{uuid.uuid4().hex}", f"CA{uuid.uuid4().hex}"
    invite = StreamInvite(url=url, parameters={})
    if url.startswith(("http://", "https://")):
        invite = await answer_webhook(url, call_sid, account_sid, auth_token)
    headers = {"X-Twilio-Signature": twilio_signature(auth_token, invite.url)} if auth_token else {}
    marks: list[str] = []
    clears = 0
    pending_marks: list[tuple[float, str]] = []
    closed_by_server = False

    async with websockets.connect(invite.url, max_size=2**20, additional_headers=headers) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": stream_sid,
                    "start": {
                        "accountSid": account_sid,
                        "streamSid": stream_sid,
                        "callSid": call_sid,
                        "tracks": ["inbound"],
                        "customParameters": invite.parameters,
                        "mediaFormat": MEDIA_FORMAT,
                    },
                }
            )
        )
        handset = Handset(origin=time.monotonic())
        recording_done = asyncio.Event()

        async def echo_marks() -> None:
            while True:
                now = handset.now()
                while pending_marks and pending_marks[0][0] <= now:
                    _, name = pending_marks.pop(0)
                    marks.append(name)
                    await ws.send(mark_message(stream_sid, name))
                await asyncio.sleep(0.005)

        async def send_audio() -> None:
            sequence = 2
            frames = (len(caller) + FRAME_BYTES - 1) // FRAME_BYTES
            index = 0
            while True:
                chunk = caller[index * FRAME_BYTES : (index + 1) * FRAME_BYTES] if index < frames else b""
                if index == frames:
                    recording_done.set()
                chunk = chunk + SILENCE[len(chunk) :]
                await ws.send(
                    json.dumps(
                        {
                            "event": "media",
                            "sequenceNumber": str(sequence),
                            "streamSid": stream_sid,
                            "media": {
                                "track": "inbound",
                                "chunk": str(index + 1),
                                "timestamp": str(int(index * FRAME_S * 1000)),
                                "payload": base64.b64encode(chunk).decode(),
                            },
                        }
                    )
                )
                sequence += 1
                index += 1
                await asyncio.sleep(max(0.0, index * FRAME_S - handset.now()))

        async def receive() -> None:
            nonlocal clears
            async for message in ws:
                event = json.loads(message)
                kind = event.get("event")
                if kind == "media":
                    handset.play(audioop.ulaw2lin(base64.b64decode(event["media"]["payload"]), 2))
                elif kind == "mark":
                    pending_marks.append((handset.play_until, event["mark"]["name"]))
                    pending_marks.sort()
                elif kind == "clear":
                    clears += 1
                    handset.clear()
                    for i, (_, name) in enumerate(pending_marks):  # Twilio echoes cleared marks at once
                        pending_marks[i] = (0.0, name)

        tasks = [asyncio.create_task(t()) for t in (echo_marks, send_audio, receive)]
        sender, receiver = tasks[1], tasks[2]
        try:
            # The recording plays out, unless the server ends the call first.
            done = asyncio.create_task(recording_done.wait())
            await asyncio.wait([done, sender, receiver], return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            ended = handset.now()
            while handset.now() - ended < max_tail_s and not receiver.done():
                await asyncio.sleep(0.05)
                quiet = handset.now() - max(handset.play_until, handset.last_audio_at, ended)
                if quiet > tail_s and not pending_marks:
                    break
            closed_by_server = receiver.done()
            if stop and not closed_by_server:
                await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {"callSid": call_sid}}))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    turns = pair_replies(speech_spans(pcm, rate), handset.reply_starts)
    latencies = [t["first_sound_ms"] for t in turns if t["first_sound_ms"] is not None]
    return PhoneCallResult(
        turns=turns,
        heard_audio=bytes(handset.heard),
        marks_echoed=marks,
        clears=clears,
        summary=summarize(latencies),
        stream_sid=stream_sid,
        call_sid=call_sid,
        closed_by_server=closed_by_server,
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
    """`place_call`, or None when the server's webhook rejects the call (busy)."""
    try:
        return await place_call(wav, url, **options)
    except CallRejected:
        return None


async def dial(
    wav: Path,
    url: str,
    *,
    auth_token: str = "",
    account_sid: str = "",
    out: Path | None = None,
    report: Path | None = None,
) -> int:
    try:
        result = await place_call(wav, url, auth_token=auth_token, account_sid=account_sid or TEST_ACCOUNT_SID)
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
        with wave.open(str(out), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(TWILIO_RATE)
            w.writeframes(result.heard_audio)
    return 0
