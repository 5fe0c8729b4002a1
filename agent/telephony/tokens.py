"""Per-call stream tokens, shared by every carrier: the webhook that admits a call issues one, the media stream
must bring it back.

A token is stateless (any worker or machine that holds the secret can check it): the expiry and an HMAC-SHA256
over the call id and that expiry, under a server secret. It is short-lived and used once per process: a redeemed
token is remembered until it expires, so a replay on the same process is refused; the memory is bounded by the
number of calls admitted within one token lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable

from loguru import logger

from agent.settings import Settings

MAX_REMEMBERED = 100_000  # redeemed tokens kept until expiry: far above any call rate one process can serve


class GateRefused(Exception):
    """A stream or webhook is refused. `reason` is a short metric label, `status` the HTTP status for a refused
    request; the message never holds a secret."""

    def __init__(self, reason: str, detail: str, status: int = 403) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


class StreamTokens:
    """Issues and redeems per-call stream tokens (`<expiry>.<mac>`), carrier-neutral: the call id is the carrier's
    (Twilio's CallSid, Telnyx's call_control_id, ...)."""

    def __init__(self, secret: bytes, ttl_s: float, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the stream token secret must be at least 16 bytes")
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock
        self._redeemed: set[bytes] = set()
        self._expiries: deque[tuple[int, bytes]] = deque()

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamTokens:
        """Tokens under STREAM_TOKEN_SECRET, or under a random per-process secret when it is unset."""
        secret = settings.stream_token_secret.get_secret_value().encode()
        if not secret:
            secret = secrets.token_bytes(32)
            logger.info(
                "stream tokens: STREAM_TOKEN_SECRET is not set, using a random secret of this process; "
                "deployments with several processes or machines behind one number must set it"
            )
        return cls(secret, settings.stream_token_ttl_seconds)

    @property
    def remembered(self) -> int:
        """Redeemed tokens kept (until they expire) to refuse replays."""
        return len(self._redeemed)

    def issue(self, call_id: str, *, carrier: str, instance: str) -> str:
        """A token for `call_id` of `carrier`, to be brought back on `instance`'s stream path."""
        expiry = int(self._clock() + self._ttl_s)
        return f"{expiry}.{_b64(self._mac(call_id, expiry, carrier, instance))}"

    def redeem(self, token: str | None, call_id: str, *, carrier: str, instance: str) -> None:
        """Accept `token` for `call_id` of `carrier`, on `instance`, once, or raise GateRefused saying why."""
        if not token:
            raise GateRefused("token_missing", "no stream token")
        expiry_text, _, mac_text = token.partition(".")
        if not (expiry_text.isascii() and expiry_text.isdigit()) or len(expiry_text) > 12 or len(mac_text) != 43:
            raise GateRefused("token_invalid", "a malformed stream token")
        expiry = int(expiry_text)
        mac = self._mac(call_id, expiry, carrier, instance)
        if not hmac.compare_digest(_b64(mac), mac_text):
            raise GateRefused("token_invalid", "a stream token not issued for this call, carrier and instance")
        now = self._clock()
        if now > expiry:
            raise GateRefused("token_expired", f"a stream token that expired {now - expiry:.0f} s ago")
        self._forget_expired(now)
        if mac in self._redeemed:
            raise GateRefused("token_replayed", "a stream token that was already used")
        if len(self._redeemed) >= MAX_REMEMBERED:
            raise GateRefused("token_memory_full", "too many stream tokens in use")
        self._redeemed.add(mac)
        self._expiries.append((expiry, mac))

    def _mac(self, call_id: str, expiry: int, carrier: str, instance: str) -> bytes:
        message = f"stream-token\n{carrier}\n{instance}\n{call_id}\n{expiry}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def _forget_expired(self, now: float) -> None:
        # Expiries are issued at a fixed lifetime, so they arrive roughly in order; a late one is simply kept a
        # little longer than needed.
        while self._expiries and self._expiries[0][0] < now:
            self._redeemed.discard(self._expiries.popleft()[1])


def _b64(mac: bytes) -> str:
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
