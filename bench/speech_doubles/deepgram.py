"""Deepgram's live transcription API (`wss://api.deepgram.com/v1/listen`) on 127.0.0.1, with real words from the
local Whisper.

The handshake is checked as Deepgram documents it: `Authorization: Token <key>`, only the query parameters the
live API knows, with valid values (a known model, linear16 audio with its sample rate, `utterance_end_ms` only with
interim results). On the socket: binary audio; `KeepAlive`, `Finalize` and `CloseStream` as JSON; anything else
closes it (1008), and 10 s without a message closes it as Deepgram does (1011, NET-0001). Replies:

- `Results` with `is_final: false` about once a second of speech (with `interim_results=true`);
- `Results` with `is_final: true, speech_final: true` when the speech is followed by the endpointing silence (the
  double's energy detector needs at least `MIN_ENDPOINT_S` of it to tell a pause from a stop consonant);
- `Results` with `is_final: true, from_finalize: true` for each `Finalize`, with what is left (possibly nothing);
- `UtteranceEnd` once `utterance_end_ms` of silence follows the last word (when asked for);
- `Metadata`, then a normal close, after `CloseStream`.

A final is recognised with the utterance's earlier finals as context, as a streaming model keeps its state: Whisper
hears the utterance so far (the audio since a silence of `CONTEXT_GAP_S`) and the final says the words past those
already finalised. Without it every piece cut at a pause was heard alone ("five" and "five" became "you 5." "5.").
Word times are spread over the speech by character count (the double does not align words).
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from agent.speech.energy import speech_spans
from agent.speech.whisper import WhisperTranscriber
from bench.speech_doubles.base import Connection, Jobs, Refused, WebsocketDouble

BOOLEAN = {"true", "false"}
PARAMETERS: dict[str, Callable[[str], bool]] = {  # the live API's query parameters and their valid values
    "callback": lambda v: v.startswith(("http://", "https://")),
    "callback_method": lambda v: v in {"POST", "GET", "PUT", "DELETE"},
    "channels": str.isdigit,
    "detect_entities": BOOLEAN.__contains__,
    "diarize": BOOLEAN.__contains__,
    "dictation": BOOLEAN.__contains__,
    "encoding": lambda v: v == "linear16",  # the double decodes only raw 16-bit PCM (pipecat's default)
    "endpointing": lambda v: v == "false" or v.isdigit(),
    "interim_results": BOOLEAN.__contains__,
    "keyterm": bool,
    "keywords": bool,
    "language": lambda v: v in {"en", "en-US", "en-GB", "en-AU", "en-IN", "en-NZ", "multi"},
    "mip_opt_out": BOOLEAN.__contains__,
    "model": lambda v: (
        v in {"nova-3", "nova-3-general", "nova-3-medical", "nova-2", "nova-2-general", "nova-2-phonecall"}
    ),  # fmt: skip
    "multichannel": BOOLEAN.__contains__,
    "numerals": BOOLEAN.__contains__,
    "profanity_filter": BOOLEAN.__contains__,
    "punctuate": BOOLEAN.__contains__,
    "redact": bool,
    "replace": bool,
    "sample_rate": lambda v: v in {"8000", "16000", "24000", "44100", "48000"},
    "search": bool,
    "smart_format": BOOLEAN.__contains__,
    "tag": bool,
    "utterance_end_ms": lambda v: v.isdigit() and int(v) >= 1000,
    "vad_events": BOOLEAN.__contains__,
    "version": bool,
}
DEFAULT_ENDPOINTING_S = 0.01
MIN_ENDPOINT_S = 0.2
INTERIM_EVERY_S = 1.0
IDLE_CLOSE_S = 10.0
CONTEXT_GAP_S = 1.0  # speech after a longer silence starts a new utterance: earlier finals no longer its context
CONTEXT_MAX_S = 20.0


class DeepgramDouble(WebsocketDouble[WhisperTranscriber]):
    """Deepgram's `/v1/listen` websocket, transcribing with the local Whisper."""

    def check(self, path: str, query: dict[str, str], headers: Headers) -> None:
        if path != "/v1/listen":
            raise Refused(HTTPStatus.NOT_FOUND, f"no such endpoint {path}")
        authorization = headers.get("Authorization", "")
        self.check_key(authorization.removeprefix("Token ") if authorization.startswith("Token ") else None)
        for name, value in query.items():
            if name not in PARAMETERS:
                raise Refused(HTTPStatus.BAD_REQUEST, f"unknown query parameter {name}")
            if not PARAMETERS[name](value):
                raise Refused(HTTPStatus.BAD_REQUEST, f"invalid value for {name}")
        if "encoding" in query and "sample_rate" not in query:
            raise Refused(HTTPStatus.BAD_REQUEST, "sample_rate is required with encoding")
        if "utterance_end_ms" in query and query.get("interim_results") != "true":
            raise Refused(HTTPStatus.BAD_REQUEST, "utterance_end_ms needs interim_results=true")

    async def session(self, connection: Connection) -> None:
        query = self.handshakes[-1].query
        stream = _Stream(self, connection, query)
        worker = asyncio.create_task(stream.jobs.work())
        try:
            while True:
                try:
                    message = await asyncio.wait_for(connection.socket.recv(), IDLE_CLOSE_S)
                except TimeoutError:
                    await connection.socket.close(1011, "NET-0001: no audio received within the timeout")
                    return
                if isinstance(message, bytes):
                    connection.received.append(len(message))
                    stream.audio(message)
                    continue
                try:
                    control = json.loads(message)
                except json.JSONDecodeError:
                    await self.violation(connection, "DATA-0000: a text message that is not JSON")
                    return
                connection.received.append(control)
                kind = control.get("type") if isinstance(control, dict) else None
                if kind == "KeepAlive":
                    continue
                if kind == "Finalize":
                    stream.finalize()
                elif kind == "CloseStream":
                    await stream.close()
                    return
                else:
                    await self.violation(connection, f"DATA-0000: unknown control message {str(control)[:60]}")
                    return
        except ConnectionClosed:
            return
        finally:
            worker.cancel()


class _Stream:
    """One connection's audio and the replies it is owed, sent in order by one worker."""

    def __init__(self, double: DeepgramDouble, connection: Connection, query: dict[str, str]) -> None:
        self._double, self._connection = double, connection
        self.rate = int(query.get("sample_rate", "16000"))
        self.model = query.get("model", "nova-3-general")
        self.interim = query.get("interim_results") == "true"
        endpointing = query.get("endpointing", "")
        self.endpoint_s = (
            None if endpointing == "false" else int(endpointing) / 1000 if endpointing else DEFAULT_ENDPOINTING_S
        )
        self.utterance_end_s = int(query["utterance_end_ms"]) / 1000 if "utterance_end_ms" in query else None
        self.pending = bytearray()  # audio not yet in a final result
        self.start_s = 0.0  # stream time where `pending` starts
        self.since_interim = 0
        self.last_word_end: float | None = None  # for UtteranceEnd, once a final had speech
        self.context = bytearray()  # the finalised audio of the current utterance
        self.spoken_until: float | None = None  # stream time where the last final's speech ended
        self.said: list[str] = []  # the words the current utterance's finals said
        self.request_id = str(uuid.uuid4())
        self.jobs = Jobs()

    @property
    def now_s(self) -> float:
        return self.start_s + len(self.pending) / 2 / self.rate

    def audio(self, pcm: bytes) -> None:
        self.pending += pcm
        self.since_interim += len(pcm)
        spans = speech_spans(bytes(self.pending), self.rate, min_speech_s=0.0)
        spoken = bool(spans)
        silence = len(self.pending) / 2 / self.rate - spans[-1][1] if spans else 0.0
        if spoken and self.endpoint_s is not None and silence >= max(self.endpoint_s, MIN_ENDPOINT_S):
            self._final(speech_final=True, from_finalize=False)
        elif spoken and self.interim and self.since_interim >= INTERIM_EVERY_S * 2 * self.rate:
            self.since_interim = 0
            audio, start, since = bytes(self.pending), self.start_s, _now()
            self.jobs.put(lambda: self._send_results(audio, start, since, is_final=False))
        elif not spoken and self._utterance_over():
            last, self.last_word_end = self.last_word_end, None
            message = {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last}
            self.jobs.put(lambda: self._send(message))

    def _utterance_over(self) -> bool:
        """`utterance_end_ms` of silence has followed the last word of a final result (UtteranceEnd is due)."""
        if self.utterance_end_s is None or self.last_word_end is None:
            return False
        return self.now_s - self.last_word_end >= self.utterance_end_s

    def finalize(self) -> None:
        self._final(speech_final=False, from_finalize=True)

    async def close(self) -> None:
        if self.pending:
            self._final(speech_final=True, from_finalize=False)
        await self.jobs.join()
        metadata = {
            "type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
            "created": "2026-01-01T00:00:00.000Z", "duration": round(self.now_s, 3), "channels": 1,
        }  # fmt: skip
        await self._send(metadata)
        await self._connection.socket.close(1000)

    def _final(self, *, speech_final: bool, from_finalize: bool) -> None:
        audio, start, since = bytes(self.pending), self.start_s, _now()
        self.start_s, self.pending, self.since_interim = self.now_s, bytearray(), 0
        context, fresh = b"", False
        if spans := speech_spans(audio, self.rate, min_speech_s=0.0):
            gap = start + spans[0][0] - self.spoken_until if self.spoken_until is not None else math.inf
            if gap > CONTEXT_GAP_S or len(self.context) / 2 / self.rate > CONTEXT_MAX_S:
                self.context, fresh = bytearray(), True
            context = bytes(self.context)
            self.context += audio
            self.spoken_until = self.last_word_end = round(start + spans[-1][1], 3)
        self.jobs.put(
            lambda: self._send_results(
                audio,
                start,
                since,
                is_final=True,
                speech_final=speech_final,
                from_finalize=from_finalize,
                context=context,
                fresh=fresh,
            )  # fmt: skip
        )

    async def _send_results(
        self,
        audio: bytes,
        start: float,
        since: float,
        *,
        is_final: bool,
        speech_final: bool = False,
        from_finalize: bool = False,
        context: bytes = b"",
        fresh: bool = False,
    ) -> None:
        """The result for `audio` (from `start` in the stream), asked for at `since` (the event loop's time). A
        final is heard after `context` (the utterance's finalised audio; `fresh`: a new utterance starts with it)."""
        spans = speech_spans(audio, self.rate, min_speech_s=0.0)
        text = ""
        if spans and is_final:
            heard = (await asyncio.to_thread(self._double.backend.transcribe, context + audio, self.rate)).split()
            said = [] if fresh else self.said
            text, self.said = " ".join(heard[len(said) :]), heard
        elif spans:
            result = await asyncio.to_thread(self._double.backend.transcribe_if_idle, audio, self.rate)
            if result is None:  # Whisper busy: an interim is skipped, as Deepgram skips them under load
                return
            text = result.strip()
        words = _timed_words(text, start + spans[0][0], start + spans[-1][1]) if spans and text else []
        message: dict[str, Any] = {
            "type": "Results", "channel_index": [0, 1], "start": round(start, 3),
            "duration": round(len(audio) / 2 / self.rate, 3), "is_final": is_final, "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.9 if text else 0.0, "words": words}]},
            "metadata": {
                "request_id": self.request_id, "model_uuid": "00000000-0000-4000-8000-000000000000",
                "model_info": {"name": self.model, "version": "2026-01-01.0", "arch": self.model.split("-")[0]},
            },
        }  # fmt: skip
        await self._double.pace(since)
        await self._send(message)

    async def _send(self, message: dict[str, Any]) -> None:
        await self._double.reply(self._connection, message)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _timed_words(text: str, start: float, end: float) -> list[dict[str, Any]]:
    """Each word of `text` with a start and end spread over [start, end] by its length."""
    said = text.split()
    total = sum(len(w) + 1 for w in said)
    words, position = [], 0
    for word in said:
        begin = start + (end - start) * position / total
        position += len(word) + 1
        bare = word.strip(".,?!;:\"'").lower()
        words.append({
            "word": bare, "start": round(begin, 3), "end": round(start + (end - start) * position / total, 3),
            "confidence": 0.9, "punctuated_word": word,
        })  # fmt: skip
    return words
