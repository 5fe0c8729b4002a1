"""Who gets onto the Plivo bridge: webhooks signed with X-Plivo-Signature-V3, and the streams they start.

Signed mode (PLIVO_AUTH_TOKEN set): every webhook (answer URL, machine detection, the transfer and voicemail XML)
must carry Plivo's V3 signature over the URL we configured (the public one), its POST parameters and the nonce;
the stream's `start` must bring back, in `extra_headers`, the one-time token our answer XML gave that very call
(bound to its CallUUID). Plivo does not sign the stream's upgrade: the token is what admits it. Unsigned mode:
clients on this machine only, unless PLIVO_ALLOW_UNSIGNED=true. With PLIVO_AUTH_ID set, the stream's `accountId`
must be that account. The rest is the carriers' shared gate.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request, WebSocket
from loguru import logger
from starlette.datastructures import FormData

from agent.settings import Settings
from agent.telephony.gate import CarrierGate, StreamOpening
from agent.telephony.plivo import stream as plivo
from agent.telephony.tokens import StreamTokens


class PlivoGate(CarrierGate):
    """Checks Plivo's webhooks and streams (see the module docstring)."""

    carrier = "plivo"
    credential = "PLIVO_AUTH_TOKEN"
    account_setting = "PLIVO_AUTH_ID"
    call_field = "CallUUID"
    call_id_pattern = plivo.CALL_UUID

    def __init__(self, settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None]) -> None:
        super().__init__(settings, tokens, on_refused)
        self._auth_token = settings.plivo_auth_token.get_secret_value()
        logger.info(f"plivo: {self.description}")

    def verify_webhook(self, request: Request, body: bytes, form: FormData) -> bool:
        params = {key: _one_or_all(form.getlist(key)) for key in form}
        return plivo.signature_valid(
            self._auth_token,
            self.signed_url(request),
            params,
            request.headers.get(plivo.NONCE_HEADER),
            request.headers.get(plivo.SIGNATURE_HEADER),
        )

    async def read_opening(self, websocket: WebSocket) -> StreamOpening:
        return await plivo.PlivoMediaStreamSerializer.read_opening(websocket)


def _one_or_all(values: list) -> str | list[str]:
    strings = [str(v) for v in values]
    return strings[0] if len(strings) == 1 else strings
