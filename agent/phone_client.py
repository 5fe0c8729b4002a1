"""`voice-agent call`: dial a server over Twilio Media Streams the way Twilio does, with a WAV file as the caller.

It sends `connected` and `start`, then the recording as 20 ms mu-law `media` messages in real time (then
silence, as a phone line does), plays what comes back on a simulated handset (audio queues up and plays in real
time), echoes each `mark` when the audio before it has played, honours `clear`, and ends with `stop`. Latency is
measured as the caller hears it: from the end of each utterance in the recording to the first sound of the reply.
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import numpy as np
import soxr
import websockets

from agent.latency.turns import summarize
from agent.protocols.twilio import MEDIA_FORMAT, TWILIO_RATE, mark_message, twilio_signature
from agent.speech.energy import speech_spans
from pipelines.replay import read_call_wav

FRAME_S = 0.02
FRAME_BYTES = int(TWILIO_RATE * FRAME_S)  # mu-law: one byte a sample
SILENCE = b"\xff" * FRAME_BYTES
NEW_REPLY_GAP_S = 0.25  # a pause longer than this between received chunks starts a new reply


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
    closed_by_server: bool


async def place_call(
    wav: str | Path,
    url: str,
    *,
    tail_s: float = 2.0,
    max_tail_s: float = 25.0,
    stop: bool = True,
    call_sid: str | None = None,
) -> PhoneCallResult:
    pcm, rate = read_call_wav(wav)
    caller = to_phone_audio(pcm, rate)
    stream_sid, call_sid = f"MZ{uuid.uuid4().hex}", call_sid or f"CA{uuid.uuid4().hex}"
    marks: list[str] = []
    clears = 0
    pending_marks: list[tuple[float, str]] = []
    closed_by_server = False

    async with websockets.connect(url, max_size=2**20) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": stream_sid,
                    "start": {
                        "accountSid": "AC" + "0" * 32,
                        "streamSid": stream_sid,
                        "callSid": call_sid,
                        "tracks": ["inbound"],
                        "customParameters": {"caller": "voice-agent call"},
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
    latencies = [t["voice_to_voice_ms"] for t in turns if t["voice_to_voice_ms"] is not None]
    return PhoneCallResult(
        turns=turns,
        heard_audio=bytes(handset.heard),
        marks_echoed=marks,
        clears=clears,
        summary=summarize(latencies),
        stream_sid=stream_sid,
        closed_by_server=closed_by_server,
    )


async def call_through_webhook(
    wav: str | Path, webhook_url: str, *, auth_token: str = "", **options: Any
) -> PhoneCallResult | None:
    """Place a call the whole way Twilio does: POST the incoming-call webhook (signed when `auth_token` is given),
    then open the `<Stream>` its TwiML names, with the same CallSid. None when the TwiML rejects the call (busy)."""
    call_sid = f"CA{uuid.uuid4().hex}"
    form = {
        "CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": "+15550001111", "To": "+15550002222",
        "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
    }  # fmt: skip
    headers = {"X-Twilio-Signature": twilio_signature(auth_token, webhook_url, form)} if auth_token else {}
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(webhook_url, data=form, headers=headers)
    response.raise_for_status()
    twiml = ElementTree.fromstring(response.text)
    if twiml.find("Reject") is not None:
        return None
    stream = twiml.find("Connect/Stream")
    if stream is None or not stream.get("url"):
        raise RuntimeError(f"the webhook's TwiML neither connects a stream nor rejects the call: {response.text}")
    return await place_call(wav, stream.get("url", ""), call_sid=call_sid, **options)


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
                "voice_to_voice_ms": None if reply is None else round((reply - end) * 1000, 1),
            }
        )
    return turns


async def dial(wav: Path, url: str, *, webhook: str = "", out: Path | None = None, report: Path | None = None) -> int:
    """`voice-agent call`: to the stream `url`, or through the incoming-call `webhook` first, as Twilio does."""
    try:
        result = await (call_through_webhook(wav, webhook) if webhook else place_call(wav, url))
    except (websockets.exceptions.WebSocketException, httpx.HTTPError) as e:
        raise RuntimeError(f"cannot call {webhook or url}: {e}") from None
    if result is None:
        print("the webhook rejected the call: busy")
        return 1
    for turn in result.turns:
        latency = turn["voice_to_voice_ms"]
        heard = "no reply heard" if latency is None else f"reply heard after {latency:.0f} ms"
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
