"""Demo tool: book a table, written to a real SQLite database (stdlib `sqlite3`, path from `BOOKING_DB_PATH`).

Arguments come from a model that a caller can talk into anything, so they are checked as a stranger's input: the
date from today to `days_ahead` days ahead, the name stripped of control and format characters (NUL, direction
overrides) and cut to `MAX_NAME` characters before it is stored or keyed on.

Bookings are idempotent per turn: the registry runs a side-effecting call once per turn and arguments, and the
table's unique idempotency key (turn id + what was booked) makes the same booking in the same turn one row even
across processes, so two racing streams of one turn can never book twice.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

from agent.tools.registry import Tool, ToolContext, ToolError

MAX_PARTY = 20
MAX_NAME = 80
SCHEMA = FunctionSchema(
    name="book_table",
    description="Book a table at the restaurant. Confirm the party size and time with the caller first.",
    properties={
        "party_size": {"type": "integer", "description": f"Number of guests, 1 to {MAX_PARTY}."},
        "time": {"type": "string", "description": "Time of the booking, 24-hour HH:MM, e.g. 19:30."},
        "date": {"type": "string", "description": "Date of the booking, YYYY-MM-DD; leave out for today."},
        "name": {"type": "string", "description": "The name the booking is under, if the caller gave one."},
    },
    required=["party_size", "time"],
)
_CREATE = """
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    party_size INTEGER NOT NULL CHECK (party_size BETWEEN 1 AND 20),
    starts_at TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class BookingStore:
    """The bookings table in one SQLite file. Each call opens its own connection (safe from worker threads)."""

    path: Path

    @classmethod
    def open(cls, path: str | Path) -> BookingStore:
        """Create the database (and its folder) if needed. Raises OSError when the path cannot hold it."""
        store = cls(Path(path))
        store.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with closing(store._connect()) as db, db:
                db.execute(_CREATE)
        except sqlite3.Error as e:
            raise OSError(f"cannot open the booking database: {e}") from None
        return store

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=5.0)

    def book(self, *, party_size: int, starts_at: datetime, name: str, idempotency_key: str) -> dict[str, Any]:
        """Insert the booking unless this key already booked; either way return the booking as stored."""
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO bookings (idempotency_key, party_size, starts_at, name, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                (idempotency_key, party_size, starts_at.isoformat(timespec="minutes"), name,
                 datetime.now().isoformat(timespec="seconds")),
            )  # fmt: skip
            row = db.execute(
                "SELECT id, party_size, starts_at, name FROM bookings WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        booking_id, size, at, who = row
        return {"booking_id": booking_id, "party_size": size, "starts_at": at, "name": who}

    def all(self) -> list[dict[str, Any]]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT id, party_size, starts_at, name FROM bookings ORDER BY id").fetchall()
        return [{"booking_id": i, "party_size": s, "starts_at": a, "name": n} for i, s, a, n in rows]


def booking_tool(store: BookingStore, *, days_ahead: int = 365) -> Tool:
    """`book_table`, for dates from today to `days_ahead` days ahead."""

    def book_table(party_size: int, time: str, context: ToolContext, date: str = "", name: str = "") -> dict[str, Any]:
        if not 1 <= party_size <= MAX_PARTY:
            raise ToolError(f"we can seat 1 to {MAX_PARTY} guests, not {party_size}")
        day = _parse_date(date, days_ahead)
        starts_at = datetime.combine(day, _parse_time(time))
        who = clean_name(name)
        key = f"{context.turn_id}|{party_size}|{starts_at.isoformat()}|{who}"
        booking = store.book(party_size=party_size, starts_at=starts_at, name=who, idempotency_key=key)
        spoken = f"a table for {party_size} at {starts_at:%H:%M} on {starts_at:%A %d %B}"
        return {"booked": True, **booking, "confirmation": spoken}

    return Tool(SCHEMA, book_table, side_effects=True)


def clean_name(value: str) -> str:
    """Printable characters only (no NUL, no direction override or other control and format character), spaces
    collapsed, at most MAX_NAME characters."""
    printable = "".join(c for c in value if not unicodedata.category(c).startswith("C"))
    return " ".join(printable.split())[:MAX_NAME]


def _parse_time(value: str) -> time:
    try:
        return datetime.strptime(value.strip(), "%H:%M").time()
    except ValueError:
        raise ToolError(f"time should be HH:MM (24-hour), not {value!r}") from None


def _parse_date(value: str, days_ahead: int) -> date:
    today = date.today()
    if not value.strip():
        return today
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise ToolError(f"date should be YYYY-MM-DD, not {value[:40]!r}") from None
    last = today + timedelta(days=days_ahead)
    if not today <= day <= last:
        raise ToolError(f"we take bookings from today ({today}) to {last}, not for {day}")
    return day
