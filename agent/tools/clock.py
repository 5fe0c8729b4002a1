"""Demo tool: the current date and time, in the server's time zone or a named one (IANA, e.g. Europe/Paris)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

from agent.tools.registry import Tool, ToolError

SCHEMA = FunctionSchema(
    name="current_time",
    description="The current date and time. Use it whenever the caller asks what time or day it is.",
    properties={
        "timezone": {
            "type": "string",
            "description": "An IANA time zone such as Europe/London; leave out for the local time here.",
        }
    },
    required=[],
)


def current_time(timezone: str = "", *, now: Callable[[], datetime] = datetime.now) -> dict[str, Any]:
    if timezone:
        try:
            moment = now().astimezone(ZoneInfo(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"unknown time zone {timezone!r}") from None
    else:
        moment = now().astimezone()
    return {
        "time": moment.strftime("%H:%M"),
        "spoken_time": moment.strftime("%I:%M %p").lstrip("0"),
        "date": moment.strftime("%A %d %B %Y"),
        "timezone": timezone or moment.tzname() or "local",
        "iso": moment.isoformat(timespec="seconds"),
    }


def clock_tool() -> Tool:
    return Tool(SCHEMA, current_time)
