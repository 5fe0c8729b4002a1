"""Who may use the browser call socket (`/ws`) and read `/metrics` (ACCESS_TOKEN), and who may place outbound
calls (`POST /calls`, OPERATOR_TOKEN): the same rule for each token.

With ACCESS_TOKEN set, both need it: the page sends it as a websocket subprotocol (`access-token.<token>`, so it
never appears in a URL or an access log), a scraper as `Authorization: Bearer <token>`. Without it, only clients
on this machine get in: a loopback peer that no proxy forwarded (a tunnel or load balancer on the same machine
adds X-Forwarded-For, and uvicorn already replaces a trusted proxy's address with the one it forwarded for).
The Origin check in front of `/ws` stays, but it only stops other web pages: any other client can forge it.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from agent.protocols.http import is_local_client

PAGE_SUBPROTOCOL = "voice-agent"
TOKEN_SUBPROTOCOL_PREFIX = "access-token."


class Access:
    """The access rule for one token: its holders, or local clients when it is unset."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token.get_secret_value()

    @property
    def description(self) -> str:
        if self._token:
            return "the browser socket and /metrics need ACCESS_TOKEN"
        return "the browser socket and /metrics accept clients on this machine only (set ACCESS_TOKEN for others)"

    def websocket_refusal(self, connection: HTTPConnection) -> str | None:
        """None when the page's socket may open, else why not (the close reason the page shows)."""
        if not self._token:
            return None if is_local_client(connection) else "this server accepts calls from its own machine only"
        offered = connection.scope.get("subprotocols") or []
        tokens = [p.removeprefix(TOKEN_SUBPROTOCOL_PREFIX) for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)]
        presented = tokens[0] if tokens else ""
        return None if self._matches(presented) else "access token required"

    def bearer_allowed(self, connection: HTTPConnection) -> bool:
        """A request with `Authorization: Bearer <token>` (or, without a token, from this machine)."""
        if not self._token:
            return is_local_client(connection)
        scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self._matches(presented.strip())

    def _matches(self, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self._token.encode())
