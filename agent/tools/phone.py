"""The tools of a phone call, bound to that call when it starts (the registry's shared tools stay shared):

- `collect_digits` (TOOLS has `keypad`): waits for the caller to type on the keypad ("enter your booking number,
  then #") and returns the digits;
- `transfer_call` (TOOLS has `transfer` and TRANSFER_NUMBER is set): the agent says a short line and the carrier
  puts the call through to a person (`agent/telephony/transfer.py`).

Neither plays the hold phrase while it runs: one waits for the caller, the other talks to them.
"""

from __future__ import annotations

from typing import Any

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

from agent.settings import Settings
from agent.telephony.keypad import Keypad
from agent.telephony.rest import CarrierError
from agent.telephony.transfer import Transfer
from agent.tools.registry import Tool, ToolError

MAX_DIGITS = 32
COLLECT_DIGITS = FunctionSchema(
    name="collect_digits",
    description=(
        "Wait for the caller to type digits on their phone keypad (a booking or account number) and get them. "
        "In the same answer, first ask the caller to type the number and press the pound key (#) at the end."
    ),
    properties={
        "max_digits": {
            "type": "integer",
            "description": f"How many digits at most (1 to {MAX_DIGITS}); typing stops there even without #.",
        }
    },
    required=[],
)
TRANSFER_CALL = FunctionSchema(
    name="transfer_call",
    description=(
        "Put the caller through to a person (a colleague at the office). Use it when the caller asks for a person "
        "or when you cannot help. The caller hears a short line, then the transfer; say nothing after it."
    ),
    properties={"reason": {"type": "string", "description": "Why the caller is transferred, in a few words."}},
    required=[],
)


def keypad_tool(keypad: Keypad, timeout_s: float) -> Tool:
    async def collect_digits(max_digits: int = MAX_DIGITS) -> dict[str, Any]:
        if not 1 <= max_digits <= MAX_DIGITS:
            raise ToolError(f"max_digits should be 1 to {MAX_DIGITS}, not {max_digits}")
        entry = await keypad.collect(max_digits, timeout_s)
        return {"digits": entry.digits, "ended_by": entry.ended_by}

    return Tool(COLLECT_DIGITS, collect_digits, timeout_s=timeout_s + 1, hold_phrase=False)


def transfer_tool(transfer: Transfer) -> Tool:
    async def transfer_call(reason: str = "") -> dict[str, Any]:
        try:
            return await transfer.put_through()
        except CarrierError:  # logged where it failed; the model only needs to know it did
            raise ToolError("the transfer did not go through: tell the caller nobody can take the call now") from None

    return Tool(TRANSFER_CALL, transfer_call, side_effects=True, timeout_s=60, hold_phrase=False)


def phone_tools(settings: Settings, keypad: Keypad, transfer: Transfer) -> list[Tool]:
    """The phone tools TOOLS names (transfer only with a TRANSFER_NUMBER)."""
    tools = []
    if "keypad" in settings.tool_names:
        tools.append(keypad_tool(keypad, settings.dtmf_collect_timeout_seconds))
    if "transfer" in settings.tool_names and settings.transfer_number:
        tools.append(transfer_tool(transfer))
    return tools
