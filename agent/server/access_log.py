"""The server's request log, with the values of every query string redacted.

No secret this server takes travels in a URL (the page's token is a websocket subprotocol, an operator's an
`Authorization` header, a carrier's stream token a message), but a client can put one there anyway, and uvicorn
logs each request line whole, refused or not. `log_config()` is uvicorn's own logging configuration with a filter
on its access and error loggers that keeps each path and each parameter's name (when it looks like one) and
replaces every value with `REDACTED`: the log still says what was asked, never what was presented.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.config import LOGGING_CONFIG

REDACTED = "<redacted>"
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
LOGGERS = ("uvicorn.access", "uvicorn.error")  # request lines, and websocket handshakes ("WebSocket /path?...")


def redacted(target: str) -> str:
    """`/path?token=abc&x=1` -> `/path?token=<redacted>&x=<redacted>`."""
    path, _, query = target.partition("?")
    if not query:
        return target
    return f"{path}?" + "&".join(f"{_name(part)}={REDACTED}" for part in query.split("&"))


def _name(parameter: str) -> str:
    """A parameter's name when it looks like one ("operator_token"); a bare value ("?s3cret") or anything else is
    no name to keep."""
    name, equals, _ = parameter.partition("=")
    return name if equals and NAME.fullmatch(name) else "?"


class RedactQueryStrings(logging.Filter):
    """Rewrites every path-like argument of a log record (`/...?...`) with its query's values redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(arg: object) -> object:
    return redacted(arg) if isinstance(arg, str) and arg.startswith("/") and "?" in arg else arg


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration, with the redacting filter on its request and error loggers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_query_strings": {"()": RedactQueryStrings}}
    for name in LOGGERS:
        config["loggers"].setdefault(name, {})["filters"] = ["redact_query_strings"]
    return config
