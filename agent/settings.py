"""Settings: every knob the agent reads, typed and checked once at start-up (pydantic-settings).

Each field is one environment variable of the same name in upper case, read from the process environment, then from
an optional `.env` file. Each field carries its description, and the first field of each group a `section` marker:
`.env.example` and the README's settings table are generated from them (`python -m agent.settings_doc`).
Values are strict: `SPECULATE=ture` is an error, not `False`; numbers have ranges. A bad value stops start-up with
a `SettingsError` that names the variable.

Units are in the names: durations inside a turn are milliseconds (`*_MS`), durations of a call are seconds
(`*_SECONDS`). Secrets are `SecretStr`: they print as `**********` in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Ms = Annotated[float, Field(ge=0, le=60_000)]
PositiveMs = Annotated[float, Field(gt=0, le=60_000)]

# Variables that older releases read, and what replaced them: set, they stop start-up instead of being ignored.
RENAMED = {
    "VAD_STOP_SECS": "VAD_STOP_MS",
    "VAD_START_SECS": "VAD_START_MS",
    "END_OF_TURN_MIN_S": "END_OF_TURN_MIN_MS",
    "END_OF_TURN_MAX_S": "END_OF_TURN_MAX_MS",
    "LLM_FIRST_TOKEN_TIMEOUT_S": "LLM_FIRST_TOKEN_TIMEOUT_MS",
    "LLM_STREAM_IDLE_TIMEOUT_S": "LLM_STREAM_IDLE_TIMEOUT_MS",
    "STT_WINDOW_S": "STT_MIN_WINDOW_MS",
    "STT_WINDOW_MS": "STT_MIN_WINDOW_MS",
}
# Variables that were replaced by a different idea, and what to set instead.
REPLACED = {
    "END_OF_TURN_MID_MS": "END_OF_TURN_THRESHOLD (the wait now grows smoothly from END_OF_TURN_MIN_MS to _MAX_MS)",
    "FALLBACK_BASE_URL": "LLM_FALLBACKS (provider names, e.g. groq,local)",
    "FALLBACK_MODEL": "LLM_FALLBACKS and that provider's *_MODEL",
    "FALLBACK_API_KEY": "LLM_FALLBACKS and that provider's *_API_KEY",
}
PROVIDER_NAMES = ("cerebras", "groq", "sambanova", "openai", "local")


# Secrets the agent checks (not ones a provider issues) must be long and URL/header-safe: the page sends the access
# token in a websocket subprotocol, which allows only these characters.
MIN_SECRET_CHARS = 24
WORKERS_PER_CORE = 4  # WORKERS=auto: a call mostly waits on its caller, so a core carries several
WORKER_MEMORY_BYTES = 600 * 1024 * 1024  # a warm worker's memory with room to spare (~350 MB PSS measured)
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def section(title: str, note: str = "") -> dict[str, str]:
    """Marks the first field of a group of settings: its heading in `.env.example` and the README (agent.settings_doc).

    The fields that follow it in `Settings`, up to the next marked one, belong to the group."""
    return {"section": title, "note": note}


class SettingsError(ValueError):
    """A setting has a value the agent cannot use. The message names the variable and never holds a secret."""


class Settings(BaseSettings):
    """Everything the agent reads from its environment; build it with `Settings.load()`."""

    model_config = SettingsConfigDict(
        env_file_encoding="utf-8", extra="ignore", frozen=True, validate_default=True, case_sensitive=False
    )

    llm_provider: Literal["auto", "cerebras", "groq", "sambanova", "openai", "local"] = Field(
        "auto",
        description="Which platform answers: auto = the first of cerebras, groq, sambanova, openai with a key, else "
        "the embedded local model; or force one: cerebras | groq | sambanova | openai (any OpenAI-compatible server) "
        "| local",
        json_schema_extra=section("LLM providers", 'declared in agent/llm/providers.py; see README "Providers"'),
    )
    llm_fallbacks: str = Field(
        "",
        description="Providers tried after the primary, in order, when it is slow (hedging), failing or out of quota "
        "(comma list of the names above, e.g. groq,local; empty = none). Each needs its own key/URL below",
    )
    cerebras_api_key: SecretStr = Field(
        SecretStr(""),
        description="Cerebras API key (never logged, never sent to the browser; a rejected key stops start-up with a "
        "message naming it)",
    )
    cerebras_base_url: str = Field(
        "https://api.cerebras.ai/v1", description="Cerebras endpoint (OpenAI-compatible, ending in /v1)"
    )
    cerebras_model: str = Field(
        "gpt-oss-120b", description="Cerebras model, checked against the provider's GET /models at start-up"
    )
    groq_api_key: SecretStr = Field(SecretStr(""), description="Groq API key (never logged, never sent to the browser)")
    groq_base_url: str = Field(
        "https://api.groq.com/openai/v1", description="Groq endpoint (OpenAI-compatible, ending in /v1)"
    )
    groq_model: str = Field(
        "openai/gpt-oss-120b", description="Groq model, checked against the provider's GET /models at start-up"
    )
    sambanova_api_key: SecretStr = Field(
        SecretStr(""), description="SambaNova API key (never logged, never sent to the browser)"
    )
    sambanova_base_url: str = Field(
        "https://api.sambanova.ai/v1", description="SambaNova endpoint (OpenAI-compatible, ending in /v1)"
    )
    sambanova_model: str = Field(
        "gpt-oss-120b", description="SambaNova model, checked against the provider's GET /models at start-up"
    )
    llm_api_key: SecretStr = Field(
        SecretStr(""),
        description="Key for the openai provider (vLLM, NVIDIA NIM, llama.cpp...); may stay empty for a server "
        "without auth",
    )
    llm_base_url: str = Field(
        "",
        description="The openai provider's server, ending in /v1, e.g. http://gpu-box:8000/v1 (required when "
        "LLM_PROVIDER or LLM_FALLBACKS name it)",
    )
    llm_model: str = Field(
        "gpt-oss-120b", description="The openai provider's model, checked against its GET /models at start-up"
    )
    reasoning_effort: Literal["", "low", "medium", "high"] = Field(
        "low", description="Reasoning effort for gpt-oss models (low | medium | high); reasoning text is never spoken"
    )
    max_completion_tokens: int = Field(
        160, ge=16, le=8192, description="Upper bound on tokens per answer (sent as max_completion_tokens)"
    )
    max_spoken_sentences: int = Field(
        2, ge=1, le=20, description="Sentences spoken per answer; the rest of the stream is read but not spoken"
    )
    temperature: float = Field(0.6, ge=0, le=2, description="Sampling temperature")
    system_prompt: str = Field(
        "You are a friendly voice assistant on a phone call. Answer in one or two short spoken sentences. "
        "No lists, no markdown, no emoji.",
        description="The agent's instructions",
    )
    llm_first_token_timeout_ms: PositiveMs = Field(
        3000,
        description="Wait this long for the first token before giving up on a provider (then the next in "
        "LLM_FALLBACKS, or an apology), ms",
    )
    llm_stream_idle_timeout_ms: PositiveMs = Field(
        5000, description="A started stream may stall this long between tokens before it counts as cut, ms"
    )
    hedge_after_ms: Ms = Field(
        250,
        description="No spoken token from the provider this long after the request: send it to the next provider "
        "too, ms",
    )
    acknowledge_after_ms: Ms = Field(
        500,
        description="The answer is not ready this long after the caller's turn was confirmed: speak the "
        "acknowledgement (pre-synthesised; it is cut off the moment the answer is ready, so it never delays it), "
        "ms; 0 = never",
    )
    acknowledgement: str = Field("Let me think.", description="What the agent says when the answer is late")

    tools: str = Field(
        "clock,booking,keypad,transfer",
        description="Tools the agent may call, comma-separated: clock (the current time), booking (table booking), "
        "and on phone calls keypad (collect_digits: wait for digits typed on the keypad) and transfer "
        "(transfer_call, when TRANSFER_NUMBER is set); empty = none",
        json_schema_extra=section("Tools", "function calling, on providers that support it; the local model does not"),
    )
    booking_db_path: str = Field(
        "bookings.sqlite3",
        description="SQLite database the booking tool writes to (created, with its folder, at start-up)",
    )
    booking_days_ahead: int = Field(
        365,
        ge=0,
        le=3650,
        description="The booking tool books from today to this many days ahead; a date outside is refused",
    )

    local_llm_threads: int = Field(
        2,
        ge=1,
        le=64,
        description="Threads for the embedded llama.cpp server (SmolLM2-135M-Instruct)",
        json_schema_extra=section("Local models", "the offline defaults"),
    )
    local_llm_ctx: int = Field(2048, ge=256, le=32768, description="Context window of the local model, in tokens")
    local_llm_first_token_timeout_ms: PositiveMs = Field(
        8000,
        description="Time allowed for the local model's first token (it shares the CPU with speech, so its prefill "
        "is slower than a provider's; LLM_FIRST_TOKEN_TIMEOUT_MS applies to remote providers), ms",
    )
    tts_engine: Literal["hibari", "piper"] = Field(
        "hibari", description="Text-to-speech voice: hibari (default, 24 kHz) | piper (en_US-joe-medium)"
    )
    stt_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="CPU threads for one Whisper tiny.en decode (on 2 cores one was faster than two, at half the CPU)",
    )
    stt_min_window_ms: float = Field(
        10_000,
        ge=1000,
        le=30_000,
        description="Shortest Whisper encoder window, ms: a clip is padded to its length plus a second, at least "
        "this, not to 30 s (30000 = stock Whisper; the encoder's cost follows the window)",
    )
    stt_piece_ms: float = Field(
        3000,
        ge=1000,
        le=20_000,
        description="An utterance longer than this is cut at its next pause and transcribed piece by piece while "
        "the caller goes on (a piece with no pause at all is cut at three times this), ms",
    )

    stt_provider: Literal["local", "deepgram"] = Field(
        "local",
        description="Who transcribes the caller",
        json_schema_extra=section(
            "Hosted speech", "agent/speech/hosted.py; the local models stay the default and the fallback"
        ),
    )
    deepgram_api_key: SecretStr = Field(SecretStr(""), description="Deepgram key, sent as `Authorization: Token`")
    deepgram_base_url: str = Field("wss://api.deepgram.com", description="Deepgram's websocket origin")
    deepgram_model: str = Field("nova-3-general", description="Deepgram live model")
    deepgram_language: str = Field("en", description="Deepgram recognition language")
    tts_provider: Literal["local", "cartesia", "elevenlabs"] = Field("local", description="Whose voice answers")
    cartesia_api_key: SecretStr = Field(SecretStr(""), description="Cartesia key, sent as `X-API-Key`")
    cartesia_base_url: str = Field("wss://api.cartesia.ai", description="Cartesia's websocket origin")
    cartesia_model: str = Field("sonic-3.6", description="Cartesia TTS model")
    cartesia_voice: str = Field("", description="Cartesia voice id (required with TTS_PROVIDER=cartesia)")
    cartesia_language: str = Field("en", description="Cartesia synthesis language")
    elevenlabs_api_key: SecretStr = Field(SecretStr(""), description="ElevenLabs key, sent as `xi-api-key`")
    elevenlabs_base_url: str = Field("wss://api.elevenlabs.io", description="ElevenLabs' websocket origin")
    elevenlabs_model: str = Field("eleven_flash_v2_5", description="ElevenLabs TTS model")
    elevenlabs_voice: str = Field("", description="ElevenLabs voice id (required with TTS_PROVIDER=elevenlabs)")
    elevenlabs_language: str = Field("en", description="ElevenLabs synthesis language")
    hosted_speech_timeout_ms: PositiveMs = Field(
        1500, description="No hosted transcript or audio this long when due: the call goes on with the local model"
    )

    vad_stop_ms: float = Field(
        64,
        ge=32,
        le=2000,
        description="Silence before the VAD calls the caller's speech over, ms: STT (and the speculative LLM "
        "request) start then",
        json_schema_extra=section("Turn taking"),
    )
    vad_start_ms: float = Field(
        100,
        ge=32,
        le=2000,
        description="Speech before the VAD calls the caller started, ms (also how fast barge-in reacts)",
    )
    end_of_turn_min_ms: Ms = Field(
        300,
        description="Further silence after the VAD stop before the turn ends, ms: the shortest wait, when the words "
        "say the caller is done (the speculative answer is streaming meanwhile)",
    )
    end_of_turn_max_ms: Ms = Field(
        1100,
        description='The longest wait, when the words stopped mid-phrase ("I need to", "can you put"): callers pause '
        "up to ~1 s there, ms. In between, the wait grows with how unlikely it is that the caller is done",
    )
    end_of_turn_threshold: float = Field(
        0.97,
        gt=0,
        lt=1,
        description="The combined P(done) of the words and the voice at or above which the shortest wait applies: "
        'lower answers sooner and speaks into more of the caller\'s pauses (README "Benchmark: turn taking" has '
        "the trade-off curve)",
    )
    end_of_turn_learn_pauses: bool = Field(
        False,
        description="Learn each caller's mid-sentence pauses: once a caller talks over an answer that started in "
        "their pause, wait out that pause (+250 ms, within LATENCY_BUDGET_MS) for the rest of the call. Fewer false "
        'starts for callers who pause, later answers for them (README "Benchmark" has the measured cost)',
    )
    speculate: bool = Field(
        True, description="Start the LLM on the transcript at the first silence, before the turn is over"
    )
    end_of_turn_judge: Literal["local", "provider"] = Field(
        "local",
        description="Who decides that the caller is done: local = the words model and the voice, on this machine; "
        "provider = the LLM itself, by pipecat's turn-completion marker at the start of the speculative answer "
        '(needs SPECULATE and a capable remote model as LLM_PROVIDER; README "Turn taking")',
    )
    end_of_turn_cut_off_wait_ms: PositiveMs = Field(
        3000,
        description="With the provider as judge: silence after a caller it judged cut off mid-sentence before the "
        "agent invites them to go on, ms",
    )
    end_of_turn_needs_time_wait_ms: PositiveMs = Field(
        8000,
        description='With the provider as judge: silence after a caller asked for time ("hold on", "let me think") '
        "before the agent checks in, ms",
    )
    first_clause_min_words: int = Field(
        2, ge=1, le=50, description="The first clause goes to TTS at a comma/dash once it has this many words ..."
    )
    first_clause_max_words: int = Field(
        6, ge=1, le=50, description="... or at this many words with no punctuation at all"
    )

    latency_budget_ms: PositiveMs = Field(
        800, description="Target voice-to-voice time per turn, ms", json_schema_extra=section("Latency budget")
    )
    latency_stage_budgets_ms: str = Field(
        "",
        description='Per-stage allocations overriding the defaults, e.g. "stt=150,llm_ttft=250" (stages: '
        "vad_stop, stt, end_of_turn, llm_request, llm_ttft, first_clause, tts, output, playout)",
    )

    host: str = Field(
        "127.0.0.1",
        description="Address the server listens on",
        json_schema_extra=section("Server (voice-agent serve)"),
    )
    port: int = Field(7860, ge=0, le=65535, description="Port the server listens on")
    max_sessions: int = Field(
        4,
        ge=0,
        le=1000,
        description="Hard ceiling on calls at once (browser + phone); below it, idle workers and measured load decide",
    )
    max_call_seconds: float = Field(
        900, gt=0, le=86_400, description="The agent ends a call (says goodbye, hangs up) after this many seconds"
    )
    allowed_origins: str = Field(
        "", description="Comma-separated origins allowed to open the page's websocket; empty = same origin only"
    )
    public_url: str = Field(
        "",
        description="Public https URL of this server, for the carriers' <Stream> and callbacks (e.g. "
        "https://abc.ngrok.app)",
    )
    twilio_account_sid: str = Field(
        "",
        json_schema_extra=section(
            "Twilio", 'README "Phone calls": the number\'s webhook is POST https://<host>/twilio/voice'
        ),
        description="Twilio account SID: with the auth token it hangs up, transfers and dials calls; set, only "
        "streams of that account are admitted",
    )
    twilio_auth_token: SecretStr = Field(
        SecretStr(""),
        description="Twilio auth token: checks the signatures of webhooks and stream upgrades (signed mode); never "
        "logged",
    )
    twilio_api_base_url: str = Field(
        "",
        description="Twilio REST API host for hanging up (empty = https://api.twilio.com); for tests or a "
        "Twilio-compatible backend",
    )
    twilio_allow_unsigned: bool = Field(
        False,
        description="Without TWILIO_AUTH_TOKEN, a public server (HOST not loopback, or PUBLIC_URL set) refuses to "
        "start unless this is true: then anyone who finds the URL can place calls. For closed test setups only",
    )
    twilio_from_number: str = Field(
        "", description="The number outbound Twilio calls come from (E.164, a number of your Twilio account)"
    )

    telnyx_api_key: SecretStr = Field(
        SecretStr(""),
        description="API key (Call Control hang-up and transfer, TeXML dial and update); never logged",
        json_schema_extra=section(
            "Telnyx",
            'README "Telnyx": a TeXML application whose voice webhook is POST https://<host>/telnyx/voice, with a '
            "bidirectional media stream",
        ),
    )
    telnyx_public_key: str = Field(
        "",
        description="The account's public key (Portal > Keys & Credentials > Public Key, base64): webhooks must "
        "carry its ed25519 signature (telnyx-signature-ed25519 over telnyx-timestamp|body). Empty = unsigned mode "
        "(see TELNYX_ALLOW_UNSIGNED)",
    )
    telnyx_account_sid: str = Field(
        "",
        description="The account id TeXML uses (AccountSid / the stream's user_id): only that account's streams are "
        "admitted, and outbound calls and call updates go to /texml/Accounts/<it>/Calls",
    )
    telnyx_application_id: str = Field(
        "", description="The TeXML application outbound calls are placed with (ApplicationSid)"
    )
    telnyx_from_number: str = Field("", description="The number outbound Telnyx calls come from (E.164)")
    telnyx_codec: Literal["PCMU", "PCMA"] = Field(
        "PCMU", description="Codec of the media stream, both ways: PCMU (mu-law) or PCMA (A-law)"
    )
    telnyx_api_base_url: str = Field(
        "https://api.telnyx.com/v2", description="Telnyx API; for tests or a compatible backend"
    )
    telnyx_webhook_tolerance_seconds: float = Field(
        300,
        ge=10,
        le=3600,
        description="A signed webhook older (or newer) than this is refused as a replay, seconds",
    )
    telnyx_allow_unsigned: bool = Field(
        False,
        description="Without TELNYX_PUBLIC_KEY the Telnyx routes serve clients on this machine only, unless this is "
        "true",
    )

    plivo_auth_id: str = Field(
        "",
        description="Plivo auth ID: with the token it hangs up, transfers and dials; only that account's streams "
        "are admitted",
        json_schema_extra=section(
            "Plivo",
            'README "Plivo": an application whose answer URL is POST https://<host>/plivo/voice, answered with a '
            "bidirectional <Stream>",
        ),
    )
    plivo_auth_token: SecretStr = Field(
        SecretStr(""),
        description="Plivo auth token: checks X-Plivo-Signature-V3 on every webhook; never logged",
    )
    plivo_from_number: str = Field("", description="The number outbound Plivo calls come from (E.164)")
    plivo_api_base_url: str = Field("https://api.plivo.com", description="Plivo API; for tests or a compatible backend")
    plivo_allow_unsigned: bool = Field(
        False,
        description="Without PLIVO_AUTH_TOKEN the Plivo routes serve clients on this machine only, unless this is true",
    )

    operator_token: SecretStr = Field(
        SecretStr(""),
        description='Token for POST /calls (voice-agent dial sends it as "Authorization: Bearer <token>"); same '
        "rules as STREAM_TOKEN_SECRET. Empty = only clients on this machine may place calls",
        json_schema_extra=section("Outbound calls, transfer to a person, keypad", 'README "Outbound calls"'),
    )
    dial_allowlist: str = Field(
        "",
        description="E.164 prefixes the agent may ever call (outbound calls and transfers), comma-separated, e.g. "
        "+1555,+4420. Empty = none: no call is placed anywhere (toll fraud)",
    )
    dial_greeting: str = Field(
        "",
        description="What the agent says first on an outbound call, unless the dial request gives its own (empty = "
        "it waits)",
    )
    dial_timeout_seconds: float = Field(
        60,
        ge=5,
        le=600,
        description="An outbound call takes its slot (through the admission) when it is dialled; not answered within "
        "this long (plus a 30 s margin for the answer webhook and the stream), it gives the slot back, seconds",
    )
    dial_burst: int = Field(
        3,
        ge=1,
        le=1000,
        description="Calls one operator credential may place at once before its rate applies (POST /calls)",
    )
    dial_rate_per_minute: float = Field(
        6, gt=0, le=6000, description="Calls one operator credential may place per minute after its burst"
    )
    dial_total_per_minute: float = Field(
        30,
        gt=0,
        le=60_000,
        description="Calls everyone together may place per minute (with a burst of a quarter of that, at least one)",
    )
    dial_max_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="The share of the server's call capacity that outbound calls (ringing or live) may hold, so "
        "callers ringing in are never locked out by dialling; 0 = no outbound calls",
    )
    machine_detection: bool = Field(
        True,
        description="Detect answering machines on outbound calls (the carrier's asynchronous AMD, so a person is "
        "never kept waiting) and leave VOICEMAIL_MESSAGE after the greeting instead of talking to it",
    )
    voicemail_message: str = Field(
        "Hello, this is the voice assistant returning your call. Please call us back when you can. Goodbye.",
        description="The message left on an answering machine",
    )
    transfer_number: str = Field(
        "",
        description="The person the transfer_call tool puts callers through to (E.164, must match DIAL_ALLOWLIST; "
        "empty = no transfers)",
    )
    transfer_message: str = Field(
        "Let me put you through to a colleague. Please hold.", description="What the agent says before the transfer"
    )
    dtmf_interdigit_ms: float = Field(
        1500,
        ge=100,
        le=10_000,
        description='Keypad digits pressed with no more than this between them are one entry ("the caller pressed '
        '1 2 3"); # ends an entry at once, ms',
    )
    keypad_max_digits: int = Field(
        32,
        ge=1,
        le=256,
        description="Digits one keypad entry (or collection) keeps; the rest of a longer run is dropped and counted",
    )
    dtmf_collect_timeout_seconds: float = Field(
        20, ge=1, le=120, description="How long the collect_digits tool waits for the caller to type, seconds"
    )

    workers: Annotated[int, Field(ge=0, le=256)] | Literal["auto"] = Field(
        "auto",
        description="Worker processes running the calls, one call each at a time, models loaded once (auto = four "
        "per core, fewer if memory is short at ~600 MB each, at least two; the server serves once one per core is "
        "warm, the rest warm up behind it; 0 = run calls in the server process itself)",
        json_schema_extra=section("Capacity: worker processes, admission, drain", 'README "Capacity"'),
    )
    admission: Literal["load", "count"] = Field(
        "load",
        description="load = admit a call only while the machine can answer it within LATENCY_BUDGET_MS (its CPU, "
        "and recent answer times: to the answer's first audio, fillers excluded); count = admit by idle workers and "
        "MAX_SESSIONS alone",
    )
    admission_max_cpu_percent: float = Field(
        90,
        ge=10,
        le=100,
        description="No call beside live ones while the machine's CPUs are this busy, % over the last seconds (100 = "
        "ignore the CPU)",
    )
    admission_window_seconds: float = Field(
        120,
        ge=5,
        le=3600,
        description="How far back answer times count when judging whether one more call fits, seconds",
    )
    admission_min_turns: int = Field(
        3, ge=1, le=100, description="Answers needed at a number of calls before that number can be judged too slow"
    )
    phone_reservation_seconds: float = Field(
        20,
        ge=1,
        le=300,
        description="An incoming phone call's slot is held this long after the carrier's webhook was answered, for "
        "its stream to start, seconds",
    )
    drain_grace_seconds: float = Field(
        900,
        ge=0,
        le=86_400,
        description="On SIGTERM (a deploy, a scale-in) no new call is taken; live calls may go on this long before "
        "the agent says goodbye and ends them, seconds (keep the orchestrator's grace period, e.g. "
        "terminationGracePeriodSeconds, longer)",
    )
    instance_name: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]{0,63}$",
        description="This server's name behind a load balancer (its server name in deploy/haproxy.cfg, or the pod "
        "name): the webhook's answer sends the call's stream to /<carrier>/stream/<INSTANCE_NAME>, and an outbound "
        "call's answer webhook is /<carrier>/voice/<INSTANCE_NAME> (letters, digits, - _ .); empty = the host name",
    )

    stream_token_secret: SecretStr = Field(
        SecretStr(""),
        description="Secret of the one-time stream tokens the webhook gives each call (at least 24 of A-Z a-z 0-9 - _ "
        ". ~; generate: python -c 'import secrets; print(secrets.token_urlsafe(32))'). Empty = a random secret per "
        "process: set the same value on every process and machine that serves one number",
        json_schema_extra=section("Security", 'README "Security"'),
    )
    stream_token_ttl_seconds: float = Field(
        30,
        ge=1,
        le=600,
        description="How long a stream token stays valid: from the webhook's answer to the carrier opening the "
        "stream, seconds",
    )
    access_token: SecretStr = Field(
        SecretStr(""),
        description="Token for the browser page's call socket and for /metrics (same rules as STREAM_TOKEN_SECRET). "
        'Open the page as https://<host>/#token=<token> or enter it when asked; scrapers send "Authorization: '
        'Bearer <token>". Empty = only clients on this machine may use them',
    )
    session_idle_timeout_seconds: float = Field(
        30, ge=1, le=3600, description="A call whose client sends no audio for this long is closed, seconds"
    )

    @model_validator(mode="after")
    def _waits_in_order(self) -> Settings:
        if not self.end_of_turn_min_ms <= self.end_of_turn_max_ms:
            raise ValueError("END_OF_TURN_MIN_MS <= END_OF_TURN_MAX_MS is required")
        return self

    @model_validator(mode="after")
    def _judge_can_judge(self) -> Settings:
        if self.end_of_turn_judge == "provider" and not self.speculate:
            raise ValueError("END_OF_TURN_JUDGE=provider needs SPECULATE=true (the speculative answer judges)")
        return self

    @model_validator(mode="after")
    def _transfer_allowed(self) -> Settings:
        if self.transfer_number and not number_allowed(self.transfer_number, self.dial_prefixes):
            raise ValueError("TRANSFER_NUMBER must match a prefix of DIAL_ALLOWLIST (transfers go through it too)")
        return self

    @field_validator(
        "public_url",
        "cerebras_base_url",
        "groq_base_url",
        "sambanova_base_url",
        "llm_base_url",
        "twilio_api_base_url",
        "telnyx_api_base_url",
        "plivo_api_base_url",
    )
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("deepgram_base_url", "cartesia_base_url", "elevenlabs_base_url")
    @classmethod
    def _websocket_origin(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")) or value.count("/") > 2:
            raise ValueError("must be a ws:// or wss:// origin without a path, e.g. wss://api.example.com")
        return value

    @field_validator("deepgram_language", "cartesia_language", "elevenlabs_language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2,3}(-[A-Z][A-Za-z]{1,3})?", value):
            raise ValueError("must be a language code such as en, en-US, de or fr")
        return value

    @field_validator("cartesia_voice", "elevenlabs_voice")
    @classmethod
    def _voice_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{0,64}", value):
            raise ValueError("must be the provider's voice id (letters, digits, - and _)")
        return value

    @field_validator("llm_fallbacks")
    @classmethod
    def _provider_list(cls, value: str) -> str:
        names = _names(value)
        unknown = [n for n in names if n not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"unknown provider {unknown[0]!r} (known: {', '.join(PROVIDER_NAMES)})")
        if len(set(names)) != len(names):
            raise ValueError("a provider is listed twice")
        return value

    @field_validator("tools")
    @classmethod
    def _tool_list(cls, value: str) -> str:
        unknown = [n for n in _names(value) if n not in TOOL_NAMES]
        if unknown:
            raise ValueError(f"unknown tool {unknown[0]!r} (known: {', '.join(TOOL_NAMES)})")
        return value

    @field_validator("twilio_account_sid")
    @classmethod
    def _account_sid(cls, value: str) -> str:
        if value and not re.fullmatch(r"AC[0-9a-f]{32}", value):
            raise ValueError("must be a Twilio account SID: AC followed by 32 lowercase hex digits")
        return value

    @field_validator("twilio_from_number", "telnyx_from_number", "plivo_from_number", "transfer_number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if value and not E164.fullmatch(value):
            raise ValueError("must be a phone number in E.164 form: + then 8 to 15 digits, e.g. +15551234567")
        return value

    @field_validator("dial_allowlist")
    @classmethod
    def _prefixes(cls, value: str) -> str:
        bad = [p for p in _names(value) if not re.fullmatch(r"\+[0-9]{1,15}", p)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an E.164 prefix (+ then digits, e.g. +1555 or +4420)")
        return value

    @field_validator("telnyx_public_key")
    @classmethod
    def _ed25519_key(cls, value: str) -> str:
        if value:
            try:
                raw = base64.b64decode(value.strip(), validate=True)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError("must be the base64 ed25519 public key from the Telnyx portal (32 bytes)")
        return value.strip()

    @field_validator("plivo_auth_id")
    @classmethod
    def _plivo_auth_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"(MA|SA)[A-Z0-9]{18}", value):
            raise ValueError("must be a Plivo auth ID: MA or SA followed by 18 capital letters or digits")
        return value

    @field_validator("access_token", "stream_token_secret", "operator_token")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and (len(secret) < MIN_SECRET_CHARS or not set(secret) <= TOKEN_CHARS):
            raise ValueError(
                f"must be at least {MIN_SECRET_CHARS} characters of A-Z a-z 0-9 - _ . ~ "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Settings from `overrides`, then the process environment, then `env_file` (if it exists).

        Raises `SettingsError` naming the variable for any value the agent cannot use.
        """
        path = Path(env_file) if env_file else None
        path = path if path and path.is_file() else None
        _refuse_renamed(path)
        try:
            return cls(_env_file=path, **overrides)
        except ValidationError as e:
            raise SettingsError(_describe(e)) from None

    def first_token_timeout_s(self, provider: str) -> float:
        """How long `provider` gets for its first token (the local model shares the CPU with speech)."""
        ms = self.local_llm_first_token_timeout_ms if provider == "local" else self.llm_first_token_timeout_ms
        return ms / 1000

    @property
    def worker_count(self) -> int:
        """Worker processes to run calls in: WORKERS, or with `auto` four per core as memory allows (a call mostly
        waits: its CPU per call is a fraction of a core; admission by load keeps them within the budget); at least
        two; 0 = in-process."""
        if self.workers != "auto":
            return self.workers
        cores = os.cpu_count() or 1
        return max(2, min(WORKERS_PER_CORE * cores, available_memory_bytes() // WORKER_MEMORY_BYTES))

    @property
    def instance(self) -> str:
        """This server's name behind a load balancer (INSTANCE_NAME, else the host name)."""
        return self.instance_name or socket.gethostname()

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def fallbacks(self) -> list[str]:
        """LLM_FALLBACKS as a list of provider names, in order."""
        return _names(self.llm_fallbacks)

    @property
    def tool_names(self) -> list[str]:
        return _names(self.tools)

    @property
    def dial_prefixes(self) -> list[str]:
        """DIAL_ALLOWLIST as a list of E.164 prefixes (empty: no number may be dialled)."""
        return _names(self.dial_allowlist)


def available_memory_bytes() -> int:
    """The memory the kernel says is available for new work (MemAvailable); off Linux, no limit."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


TOOL_NAMES = ("clock", "booking", "keypad", "transfer")
E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def number_allowed(number: str, prefixes: list[str]) -> bool:
    """Whether `number` is an E.164 number that starts with one of `prefixes` (toll-fraud guard for every dial)."""
    return bool(E164.fullmatch(number)) and any(number.startswith(p) for p in prefixes)


def _names(value: str) -> list[str]:
    return [n.strip().lower() for n in value.split(",") if n.strip()]


def _refuse_renamed(env_file: Path | None) -> None:
    names = set(os.environ) | (set(dotenv_values(env_file)) if env_file else set())
    names = {n.upper() for n in names}
    for old, new in RENAMED.items():
        if old in names:
            raise SettingsError(f"{old} is no longer read: set {new} instead (in milliseconds)")
    for old, new in REPLACED.items():
        if old in names:
            raise SettingsError(f"{old} is no longer read: set {new} instead")


def _describe(error: ValidationError) -> str:
    """One line per bad variable, naming it; the offending value is shown unless the field is a secret."""
    lines = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "?"
        secret = Settings.model_fields.get(name.lower()) and Settings.model_fields[name.lower()].annotation is SecretStr
        value = "" if secret or item["type"] == "missing" else f"={item.get('input')!r}"
        lines.append(f"{name}{value}: {item['msg']}")
    return "; ".join(lines)
