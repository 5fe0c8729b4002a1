"""The provider chain: the primary provider, then `LLM_FALLBACKS` in order, and which of them may be asked now.

The answer racing (`agent/llm/race.py`, through `agent/llm/service.py`) asks `available()` for the providers to try, in
order, and reports each failure with `failed()`. The chain reads the failure's kind (`agent/llm/errors.py`):
- `quota` (Cerebras `token_quota_exceeded`, SambaNova `insufficient_quota`): the provider rests until the reset
  time its headers gave (or `DEFAULT_QUOTA_REST_S` when they gave none), so no turn waits on it meanwhile;
- `rate_limited`: rests until `retry-after` / the reset header when the provider said, otherwise not at all;
- `auth` (a key rejected mid-run): rests `AUTH_REST_S`, then is tried again, in case the key was rotated back;
- `overloaded` and the rest: no rest. The failure is short-lived: the racing hedges to the next provider and the
  next turn asks this one again.
A provider resting is skipped by `available()`; when every provider rests, the least-rested one is still offered,
so a turn always has someone to ask (or apologises after it fails).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loguru import logger

from agent.llm.client import ChatCompletionClient
from agent.llm.errors import ProviderError

DEFAULT_QUOTA_REST_S = 60.0
AUTH_REST_S = 300.0
MAX_REST_S = 3600.0  # a reset further away than this is not believed


@dataclass(frozen=True)
class ProviderStatus:
    """One provider's place in the chain, for `/metrics` and logs."""

    name: str
    resting_s: float  # seconds until it is asked again; 0 when available
    failures: dict[str, int]  # by error kind, since start-up


class ProviderChain:
    """Primary first, then the fallbacks; remembers failures and rests providers whose quota is spent."""

    def __init__(self, clients: Sequence[ChatCompletionClient], *, clock: Callable[[], float] = time.monotonic) -> None:
        if not clients:
            raise ValueError("a provider chain needs at least one provider")
        self.clients: list[ChatCompletionClient] = list(clients)
        self._clock = clock
        self._rest_until: dict[int, float] = {}
        self._failures: dict[int, Counter[str]] = {id(c): Counter() for c in self.clients}

    @property
    def primary(self) -> ChatCompletionClient:
        return self.clients[0]

    def available(self) -> list[ChatCompletionClient]:
        """The providers to ask now, in order, without the resting ones (never empty)."""
        now = self._clock()
        ready = [c for c in self.clients if self._rest_until.get(id(c), 0.0) <= now]
        return ready or [min(self.clients, key=lambda c: self._rest_until.get(id(c), 0.0))]

    def failed(self, client: ChatCompletionClient, error: ProviderError) -> None:
        """Record a failure of `client`; rest it when its quota is spent or it asked to be left alone."""
        self._failures.setdefault(id(client), Counter())[error.kind] += 1
        rest_s = self._rest_for(error)
        if rest_s:
            self._rest_until[id(client)] = self._clock() + rest_s
            logger.warning(f"LLM: {client.provider.name} rests {rest_s:.1f} s after {error.kind}: {error}")
        else:
            logger.info(f"LLM: {client.provider.name} failed ({error.kind}): {error}")

    def succeeded(self, client: ChatCompletionClient) -> None:
        """A provider that answered is no longer resting."""
        self._rest_until.pop(id(client), None)

    def resting_s(self, client: ChatCompletionClient) -> float:
        return max(0.0, self._rest_until.get(id(client), 0.0) - self._clock())

    def status(self) -> list[ProviderStatus]:
        return [
            ProviderStatus(c.provider.name, self.resting_s(c), dict(self._failures.get(id(c), Counter())))
            for c in self.clients
        ]

    def describe(self) -> str:
        return " -> ".join(c.provider.describe() for c in self.clients)

    @staticmethod
    def _rest_for(error: ProviderError) -> float:
        if error.kind == "quota":
            rest = error.retry_after_s if error.retry_after_s is not None else DEFAULT_QUOTA_REST_S
        elif error.kind == "rate_limited":
            rest = error.retry_after_s or 0.0
        elif error.kind == "auth":
            rest = AUTH_REST_S
        else:
            rest = 0.0
        return min(rest, MAX_REST_S)
