"""The tool registry: plain Python functions with a schema, offered to the model and run when it calls them.

A `Tool` pairs pipecat's `FunctionSchema` with a function (sync or async). The answer loop integrates it as:
`registry.schemas()` for the request's `tools`, and `await registry.run(call, turn_id)` for each `ToolCall` the
model made, whose `ToolResult.as_message()` goes back into the context.

`run` never raises: an unknown tool, arguments that are not JSON or do not fit the schema, a tool that fails or
overruns its time all become a result with an `error` the model can explain to the caller. Side-effecting tools
run at most once per turn for the same arguments: a second call (a retried or racing stream of the same turn)
gets the first call's result, even while the first is still running.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

from agent.tools.calls import ToolCall

REMEMBERED_CALLS = 512  # side-effecting calls remembered for per-turn idempotency


class ToolError(Exception):
    """Raised by a tool for a failure the caller may hear about (a bad date, a full restaurant)."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call it serves: the turn (for idempotency keys) and the call's id."""

    turn_id: str
    call_id: str


@dataclass(frozen=True)
class Tool:
    """A function the model may call. A function with a `context` parameter gets a `ToolContext`. A tool that waits
    for the caller (digits on the keypad, a transfer being put through) sets `hold_phrase=False`: no "One moment."
    while it runs."""

    schema: FunctionSchema
    function: Callable[..., Any]
    side_effects: bool = False
    timeout_s: float = 5.0
    hold_phrase: bool = True

    @property
    def name(self) -> str:
        return self.schema.name


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned (or why it could not), ready to go back into the context."""

    call: ToolCall
    content: dict[str, Any]

    @property
    def ok(self) -> bool:
        return "error" not in self.content

    def as_message(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call.id, "content": json.dumps(self.content)}


class ToolRegistry:
    """The tools offered to the model, by name."""

    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        self._runs: OrderedDict[tuple[str, str, str], asyncio.Future[dict[str, Any]]] = OrderedDict()
        for tool in tools or []:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def extended(self, tools: list[Tool]) -> ToolRegistry:
        """A new registry with these tools and `tools` (a call's own tools, bound to that call)."""
        return ToolRegistry([*self._tools.values(), *tools])

    def wants_hold_phrase(self, calls: list[ToolCall]) -> bool:
        """Whether the caller should hear the hold phrase while these calls run (not while a tool waits for them)."""
        return all(self._tools[c.name].hold_phrase for c in calls if c.name in self._tools)

    def __bool__(self) -> bool:
        return bool(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """The request's `tools`, in the OpenAI format."""
        return [{"type": "function", "function": t.schema.to_default_dict()} for t in self._tools.values()]

    async def run(self, call: ToolCall, turn_id: str) -> ToolResult:
        tool = self._tools.get(call.name)
        if tool is None:
            return ToolResult(call, {"error": f"there is no tool called {call.name!r}"})
        try:
            arguments = _checked_arguments(tool.schema, call)
        except ValueError as e:
            return ToolResult(call, {"error": f"bad arguments for {call.name}: {e}"})
        if not tool.side_effects:
            return ToolResult(call, await self._execute(tool, arguments, ToolContext(turn_id, call.id)))
        key = (turn_id, call.name, json.dumps(arguments, sort_keys=True))
        run = self._runs.get(key)
        if run is None:
            run = asyncio.ensure_future(self._execute(tool, arguments, ToolContext(turn_id, call.id)))
            self._runs[key] = run
            while len(self._runs) > REMEMBERED_CALLS:
                self._runs.popitem(last=False)
        else:
            logger.info(f"tool {call.name}: already run in turn {turn_id} with these arguments; same result")
        return ToolResult(call, await asyncio.shield(run))

    async def _execute(self, tool: Tool, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        if "context" in inspect.signature(tool.function).parameters:
            arguments = {**arguments, "context": context}
        try:
            if inspect.iscoroutinefunction(tool.function):
                result = await asyncio.wait_for(tool.function(**arguments), tool.timeout_s)
            else:
                result = await asyncio.wait_for(asyncio.to_thread(tool.function, **arguments), tool.timeout_s)
        except ToolError as e:
            return {"error": str(e)}
        except TimeoutError:
            return {"error": f"{tool.name} took longer than {tool.timeout_s:g} s"}
        except Exception:
            logger.exception(f"tool {tool.name} failed")
            return {"error": f"{tool.name} failed"}
        return result if isinstance(result, dict) else {"result": result}


def _checked_arguments(schema: FunctionSchema, call: ToolCall) -> dict[str, Any]:
    """The call's arguments, checked against the schema: required ones present, no unknown ones, JSON types right."""
    arguments = call.parsed_arguments()
    missing = [name for name in schema.required if name not in arguments]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for name, value in arguments.items():
        spec = schema.properties.get(name)
        if spec is None:
            raise ValueError(f"unknown argument {name!r}")
        expected = spec.get("type")
        if expected and not _is_type(value, expected):
            raise ValueError(f"{name} should be {expected}")
        if "enum" in spec and value not in spec["enum"]:
            raise ValueError(f"{name} should be one of {', '.join(map(str, spec['enum']))}")
    return arguments


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def _is_type(value: Any, expected: str) -> bool:
    check = _JSON_TYPES.get(expected)
    return check(value) if check else True
