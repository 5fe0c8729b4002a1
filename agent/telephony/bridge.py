"""What one carrier's bridge gives the shared phone routes (`agent/server/phone_routes.py`): its gate, its answer
documents and how it reports answering machines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import FastAPI
from starlette.datastructures import FormData

from agent.telephony.gate import CarrierGate

XML = "application/xml"
MachineAction = Literal["voicemail", "hang_up"] | None


@dataclass(frozen=True)
class Bridge:
    """One carrier's routes: its gate, the document that connects a call to our stream (given the stream URL, its
    parameters and the webhook's form), the one that rejects a call as busy, and how its machine-detection
    callback reads (and any routes of its own)."""

    gate: CarrierGate
    answer: Callable[[str, dict[str, str], FormData], str]
    busy: str
    machine_action: Callable[[FormData], MachineAction]
    add_routes: Callable[[FastAPI], None] | None = None  # the carrier's own routes, beside the shared ones

    @property
    def name(self) -> str:
        return self.gate.carrier


def answered_by_action(form: FormData) -> MachineAction:
    """Twilio's and Telnyx's `AnsweredBy` (asynchronous AMD with DetectMessageEnd): leave the message once a
    machine's greeting is over, hang up on a fax; a person (or an unknown) talks with the agent."""
    answered_by = form.get("AnsweredBy")
    if answered_by in ("machine_end_beep", "machine_end_silence", "machine_end_other"):
        return "voicemail"
    return "hang_up" if answered_by == "fax" else None
