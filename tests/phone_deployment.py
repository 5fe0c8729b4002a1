"""A phone deployment for the carrier tests: the agent's server in signed mode for Twilio, Telnyx and Plivo (each
carrier's credentials, PUBLIC_URL, an operator token, a dial allowlist), each carrier's REST API played by its
double (`carrier_doubles.py`), and the callers that sign as each carrier does.

The agent runs on the real local speech models (Whisper, the voice, Silero, Smart Turn) with the provider
simulator as its LLM: what these tests look at is the carriers' side, and a simulated provider answers in a
steady 50 ms where the embedded local LLM stalls for seconds on a loaded 2-core machine."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr

from agent.llm.simulator import ProviderSim
from agent.phone_client import caller_for
from agent.runtime import AgentRuntime, SpeechModels
from agent.server.app import create_app
from agent.settings import Settings
from agent.telephony.dialect import Dialect
from agent.telephony.registry import CARRIERS as REGISTRY
from bench.server_process import free_port
from bench.serving import RunningServer, serving
from tests.carrier_doubles import (
    PLIVO_ID,
    PLIVO_TOKEN,
    TELNYX_ACCOUNT,
    TELNYX_APP,
    TELNYX_KEY,
    TWILIO_SID,
    TWILIO_TOKEN,
    CarrierDouble,
    PlivoDouble,
    TelnyxDouble,
    TwilioDouble,
)
from tests.conftest import local_settings

CARRIERS = tuple(REGISTRY)
OPERATOR_TOKEN = "operator-token-of-the-test-deployment"
TOKEN_SECRET = "stream-token-secret-0123456789abcdef"
TRANSFER_NUMBER = "+15550009999"
FROM_NUMBER = "+15550001000"
TELNYX_SIGNING_KEY = Ed25519PrivateKey.generate()  # Telnyx's private half; the server holds the public one
TELNYX_PUBLIC_KEY = base64.b64encode(TELNYX_SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


@dataclass
class PhoneDeployment:
    server: RunningServer
    settings: Settings
    doubles: dict[str, CarrierDouble]

    def webhook(self, carrier: str) -> str:
        return f"{self.server.http}/{carrier}/voice"

    def stream(self, carrier: str) -> str:
        """The stream URL our answers give the carrier: it names this instance (for a load balancer)."""
        return f"{self.server.ws}/{carrier}/stream/{self.settings.instance}"

    def caller(self, carrier: str) -> Dialect:
        return carrier_caller(carrier)

    @property
    def app(self):
        return self.server.app

    def phone_turns(self, event: str = "closed") -> list[dict]:
        return [r for channel, e, r in self.app.state.recent_turns if channel == "phone" and e == event]

    async def metrics(self) -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.server.http}/metrics")).text

    @asynccontextmanager
    async def full(self) -> AsyncIterator[None]:
        """The server full of (reserved) incoming calls while inside; its slots are given back on the way out."""
        admission = self.app.state.admission
        held: list[str] = []
        while admission.free_slots() > 0 and len(held) < 10:
            if admission.reserve(key := f"CA{len(held):032x}"):
                held.append(key)
            else:
                await asyncio.sleep(0.1)  # refused for a busy CPU: wait until the count is what refuses
        try:
            yield
        finally:
            for key in held:
                admission.cancel(key)

    async def dial(self, body: dict[str, Any], token: str = OPERATOR_TOKEN) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = {"Authorization": f"Bearer {token}"}
            return await client.post(f"{self.server.http}/calls", json=body, headers=headers)


def carrier_caller(carrier: str) -> Dialect:
    """A caller that signs as the carrier does, with the deployment's credentials."""
    credentials: dict[str, dict[str, Any]] = {
        "twilio": {"auth_token": TWILIO_TOKEN, "account_sid": TWILIO_SID},
        "telnyx": {"signing_key": TELNYX_SIGNING_KEY, "account_id": TELNYX_ACCOUNT},
        "plivo": {"auth_token": PLIVO_TOKEN, "auth_id": PLIVO_ID},
    }
    return caller_for(carrier, **credentials[carrier])


def deployment_settings(port: int, doubles: dict[str, CarrierDouble], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "max_spoken_sentences": 2,  # the production default: answers long enough to be talked over
        "public_url": f"http://127.0.0.1:{port}",
        "stream_token_secret": SecretStr(TOKEN_SECRET),
        "operator_token": SecretStr(OPERATOR_TOKEN),
        "dial_allowlist": "+1555",
        "dial_burst": 100,  # the tests dial often; tests/test_outbound.py checks the limits at their defaults
        "transfer_number": TRANSFER_NUMBER,
        "twilio_account_sid": TWILIO_SID,
        "twilio_auth_token": SecretStr(TWILIO_TOKEN),
        "twilio_api_base_url": doubles["twilio"].base_url,
        "twilio_from_number": FROM_NUMBER,
        "telnyx_api_key": SecretStr(TELNYX_KEY),
        "telnyx_public_key": TELNYX_PUBLIC_KEY.decode(),
        "telnyx_account_sid": TELNYX_ACCOUNT,
        "telnyx_application_id": TELNYX_APP,
        "telnyx_from_number": FROM_NUMBER,
        "telnyx_api_base_url": doubles["telnyx"].base_url + "/v2",
        "plivo_auth_id": PLIVO_ID,
        "plivo_auth_token": SecretStr(PLIVO_TOKEN),
        "plivo_from_number": FROM_NUMBER,
        "plivo_api_base_url": doubles["plivo"].base_url,
    }
    return local_settings(**(values | overrides))


SIM_ANSWER = "Sure, I can help with that. What else would you like to know?"


@asynccontextmanager
async def simulated_runtime(speech: SpeechModels, sim: ProviderSim) -> AsyncIterator[AgentRuntime]:
    """A runtime on the session's speech models, answering through `sim` (started and stopped here)."""
    sim.start()
    try:
        settings = local_settings(
            llm_provider="cerebras", cerebras_api_key=SecretStr(sim.api_key), cerebras_base_url=sim.base_url
        )
        async with AgentRuntime.start(settings, speech=speech) as runtime:
            yield runtime
    finally:
        sim.stop()


@asynccontextmanager
async def phone_deployment(runtime: AgentRuntime, **overrides: Any) -> AsyncIterator[PhoneDeployment]:
    """The deployment on `runtime` (its settings replaced by the deployment's, with `overrides`)."""
    async with AsyncExitStack() as stack:
        doubles: dict[str, CarrierDouble] = {}
        for double in (TwilioDouble(lambda: carrier_caller("twilio")), TelnyxDouble(lambda: carrier_caller("telnyx")),
                       PlivoDouble(lambda: carrier_caller("plivo"))):  # fmt: skip
            doubles[double.carrier] = await stack.enter_async_context(double.running())
        port = free_port()
        settings = deployment_settings(port, doubles, **overrides)
        server = await stack.enter_async_context(serving(create_app(settings, runtime=runtime), port=port))
        yield PhoneDeployment(server, settings, doubles)
