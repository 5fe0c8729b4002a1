"""The carriers' request signatures and the settings that guard dialling, without a call: Plivo's V3 signature
against Plivo's own SDK (`plivo.utils.signature_v3`), Telnyx's ed25519 signature and its replay window, the
allowlist and number formats, and the REST errors that must never carry a credential."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from plivo.utils.signature_v3 import validate_v3_signature
from pydantic import SecretStr

from agent.settings import Settings, SettingsError, number_allowed
from agent.telephony.plivo import stream as plivo
from agent.telephony.rest import CarrierError, RestClient
from agent.telephony.telnyx import stream as telnyx
from agent.telephony.telnyx.rest import TelnyxApi
from bench.serving import serving

PLIVO_CASES = [
    ("https://agent.example.com/plivo/voice", {"CallUUID": "c1", "From": "15550100000", "Event": "StartApp"}),
    ("https://agent.example.com/plivo/voice?dial=0a1b&b=2", {"CallUUID": "c1", "To": "15550100001"}),
    ("https://agent.example.com/plivo/voicemail", {}),
    ("https://agent.example.com/plivo/transfer?to=%2B15550009999", {}),
    ("https://agent.example.com/plivo/amd", {"CallUUID": "a b&c=d", "Digits": ["2", "1"], "Machine": "true"}),
]


@pytest.mark.parametrize(("url", "params"), PLIVO_CASES)
def test_plivo_v3_signatures_are_the_ones_plivos_sdk_computes(url, params):
    signature = plivo.signature_v3("plivo-token", url, params, "31627281")
    assert validate_v3_signature("POST", url, "31627281", "plivo-token", signature, dict(params))
    assert plivo.signature_valid("plivo-token", url, params, "31627281", f"old-signature, {signature}")
    assert not plivo.signature_valid("plivo-token", url, params, "31627282", signature)  # another nonce
    assert not plivo.signature_valid("other-token", url, params, "31627281", signature)
    assert not plivo.signature_valid("plivo-token", url + "x", params, "31627281", signature)


def test_telnyx_signatures_hold_the_body_the_time_and_the_key():
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    body, now = b"CallSid=v3%3Aabc&From=%2B15550100000", int(time.time())
    headers = telnyx.sign(key, now, body)
    signature, stamp = headers[telnyx.SIGNATURE_HEADER], headers[telnyx.TIMESTAMP_HEADER]
    assert telnyx.signature_valid(public, stamp, body, signature, now=now, tolerance_s=300)
    assert not telnyx.signature_valid(public, stamp, body + b"&To=1", signature, now=now, tolerance_s=300)
    assert not telnyx.signature_valid(public, str(now + 1), body, signature, now=now, tolerance_s=300)
    assert not telnyx.signature_valid(public, stamp, body, signature, now=now + 301, tolerance_s=300)  # a replay
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    assert not telnyx.signature_valid(other.decode(), stamp, body, signature, now=now, tolerance_s=300)
    for garbage in ["", "%%%", "A" * 200, None]:
        assert not telnyx.signature_valid(public, stamp, body, garbage, now=now, tolerance_s=300)
    assert not telnyx.signature_valid(public, "12x", body, signature, now=now, tolerance_s=300)


def test_only_allowlisted_e164_numbers_can_be_dialled():
    prefixes = ["+1555", "+4420"]
    assert number_allowed("+15551234567", prefixes) and number_allowed("+442071234567", prefixes)
    for number in ["+15561234567", "15551234567", "+1555", "+1555123456789012", "+1555 123 4567", "+1555abc4567"]:
        assert not number_allowed(number, prefixes), number
    assert not number_allowed("+15551234567", [])  # no allowlist: nothing is dialled


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"dial_allowlist": "1555"}, "DIAL_ALLOWLIST"),
        ({"twilio_from_number": "555-1234"}, "TWILIO_FROM_NUMBER"),
        ({"transfer_number": "+15550009999"}, "TRANSFER_NUMBER"),  # not in the (empty) allowlist
        ({"transfer_number": "+15550009999", "dial_allowlist": "+44"}, "TRANSFER_NUMBER"),
        ({"telnyx_public_key": "bm90IGEga2V5"}, "TELNYX_PUBLIC_KEY"),
        ({"plivo_auth_id": "XX123"}, "PLIVO_AUTH_ID"),
        ({"operator_token": SecretStr("short")}, "OPERATOR_TOKEN"),
        ({"telnyx_codec": "G729"}, "TELNYX_CODEC"),
    ],
)
def test_phone_settings_are_checked_at_start_up(overrides, variable):
    with pytest.raises(SettingsError) as refused:
        Settings.load(None, **overrides)
    assert variable in str(refused.value)
    assert "short" not in str(refused.value)  # a secret's value never shows


async def test_a_carrier_error_never_carries_the_credential():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[str] = []

    async def refuse(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization", ""))
        return JSONResponse({"errors": [{"code": "10009", "title": "Authentication failed"}]}, status_code=401)

    app = Starlette(routes=[Route("/v2/calls/{id}/actions/{action}", refuse, methods=["POST"])])
    async with serving(app) as server:
        api = TelnyxApi("KEY-secret-api-key", base_url=server.http + "/v2")
        with pytest.raises(CarrierError) as failed:
            await api.hang_up("v3:" + "a" * 30)
        with pytest.raises(CarrierError) as unreachable:
            await RestClient("telnyx", "http://127.0.0.1:9", bearer="KEY-secret-api-key").request("POST", "/x")
    assert seen == ["Bearer KEY-secret-api-key"]
    for error in (failed.value, unreachable.value):
        assert "KEY-secret" not in str(error)
    assert "HTTP 401" in str(failed.value) and "/actions/hangup" in str(failed.value)
