"""Who gets onto the Telnyx bridge: TeXML webhooks signed with the account's ed25519 key, and the streams they start.

Signed mode (TELNYX_PUBLIC_KEY set): a webhook must carry a valid `telnyx-signature-ed25519` over
`telnyx-timestamp|body`, signed within TELNYX_WEBHOOK_TOLERANCE_SECONDS (an older one is a replay); the stream's
`start` must bring back the one-time token our TeXML gave that very call (`<Parameter>` -> `custom_parameters`,
bound to its CallSid, which is the call control id). Telnyx does not sign the stream's upgrade: the token is what
admits it. Unsigned mode: clients on this machine only, unless TELNYX_ALLOW_UNSIGNED=true. With
TELNYX_ACCOUNT_SID set, the stream's `user_id` must be that account. The rest is the carriers' shared gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import Request, WebSocket
from loguru import logger
from starlette.datastructures import FormData

from agent.settings import Settings
from agent.telephony.gate import CarrierGate, StreamOpening
from agent.telephony.telnyx import stream as telnyx
from agent.telephony.tokens import StreamTokens


class TelnyxGate(CarrierGate):
    """Checks Telnyx's webhooks and streams (see the module docstring)."""

    carrier = "telnyx"
    credential = "TELNYX_PUBLIC_KEY"
    account_setting = "TELNYX_ACCOUNT_SID"
    call_field = "CallSid"
    call_id_pattern = telnyx.CALL_ID

    def __init__(
        self, settings: Settings, tokens: StreamTokens, on_refused: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        super().__init__(settings, tokens, on_refused)
        self._public_key = settings.telnyx_public_key
        self._tolerance_s = settings.telnyx_webhook_tolerance_seconds
        self._clock = clock
        logger.info(f"telnyx: {self.description}")

    def verify_webhook(self, request: Request, body: bytes, form: FormData) -> bool:
        return telnyx.signature_valid(
            self._public_key,
            request.headers.get(telnyx.TIMESTAMP_HEADER),
            body,
            request.headers.get(telnyx.SIGNATURE_HEADER),
            now=self._clock(),
            tolerance_s=self._tolerance_s,
        )

    async def read_opening(self, websocket: WebSocket) -> StreamOpening:
        return await telnyx.TelnyxMediaStreamSerializer.read_opening(websocket)
