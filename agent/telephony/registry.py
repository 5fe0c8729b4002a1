"""CARRIERS: the one list of carriers, which the server's routes, `voice-agent call`/`dial`, the benchmarks and the
tests read. Adding a carrier means one folder beside `twilio/` (with its `carrier.py` declaration), one entry here
and one settings section. Everything a call needs is built from the admitted stream's opening (plain data) and
the settings, so a call can run in any process that has both (a worker process reads the opening again)."""

from __future__ import annotations

from agent.telephony.carrier import CARRIER_RATE, Carrier
from agent.telephony.plivo.carrier import PLIVO
from agent.telephony.telnyx.carrier import TELNYX
from agent.telephony.twilio.carrier import TWILIO

__all__ = ["CARRIERS", "CARRIER_RATE", "DEFAULT_CARRIER", "Carrier"]

CARRIERS: dict[str, Carrier] = {carrier.name: carrier for carrier in (TWILIO, TELNYX, PLIVO)}
DEFAULT_CARRIER = TWILIO.name  # where `POST /calls` and `voice-agent call`/`dial` go when no carrier is named
