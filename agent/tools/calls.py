"""Function calls in the OpenAI tool-call format, assembled from streamed deltas.

A streamed call arrives in pieces: the first delta of each call carries its `index`, `id` and function `name`,
later ones only the `index` and the next fragment of the JSON `arguments` (a name is never split); several calls
may interleave by index.
`ToolCallAssembler` joins them into complete `ToolCall`s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_CALLS = 16  # per completion
MAX_ARGUMENT_CHARS = 16_000  # per call: a voice agent's tool arguments are a few dozen characters


@dataclass(frozen=True)
class ToolCall:
    """One complete function call the model asked for. `arguments` is the model's raw JSON text."""

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict. Raises ValueError when the model wrote something that is not a JSON object."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"arguments are not valid JSON: {e.msg}") from None
        if not isinstance(value, dict):
            raise ValueError("arguments are not a JSON object")
        return value

    def as_message(self) -> dict[str, Any]:
        """This call as it goes back into the context, inside an assistant message's `tool_calls`."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class _Partial:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    size: int = 0


class ToolCallAssembler:
    """Collects `delta.tool_calls` fragments by index; `complete()` returns the calls in index order. Raises
    ValueError past `MAX_CALLS` calls or `MAX_ARGUMENT_CHARS` of arguments: a stream that never ends its
    arguments is not read into memory without bound."""

    def __init__(self) -> None:
        self._calls: dict[int, _Partial] = {}

    def add(self, deltas: Any) -> None:
        for delta in deltas if isinstance(deltas, list) else []:
            if not isinstance(delta, dict):
                continue
            index = delta.get("index", len(self._calls))
            call = self._calls.setdefault(index if isinstance(index, int) else len(self._calls), _Partial())
            if len(self._calls) > MAX_CALLS:
                raise ValueError(f"more than {MAX_CALLS} tool calls in one answer")
            call.id = call.id or str(delta.get("id") or "")
            function = delta.get("function") or {}
            if isinstance(function, dict):
                call.name = call.name or str(function.get("name") or "")
                call.arguments.append(str(function.get("arguments") or ""))
                call.size += len(call.arguments[-1])
                if call.size > MAX_ARGUMENT_CHARS:
                    raise ValueError(f"tool call arguments longer than {MAX_ARGUMENT_CHARS} characters")

    def __bool__(self) -> bool:
        return bool(self._calls)

    def complete(self) -> list[ToolCall]:
        return [
            ToolCall(id=c.id or f"call_{i}", name=c.name, arguments="".join(c.arguments) or "{}")
            for i, c in sorted(self._calls.items())
        ]
