"""The tools a deployment offers, built from the settings: `TOOLS` names them, `BOOKING_DB_PATH` is the database.

This registry holds the tools every call shares (clock, booking); the phone tools named in TOOLS (keypad,
transfer) act on one call and are added per phone call (`agent/tools/phone.py`)."""

from __future__ import annotations

from collections.abc import Callable

from agent.settings import Settings, SettingsError
from agent.tools.booking import BookingStore, booking_tool
from agent.tools.clock import clock_tool
from agent.tools.registry import Tool, ToolRegistry


def build_registry(settings: Settings) -> ToolRegistry:
    """The registry of the tools named in TOOLS. Raises SettingsError when the booking database cannot be opened."""

    def booking() -> Tool:
        try:
            return booking_tool(BookingStore.open(settings.booking_db_path), days_ahead=settings.booking_days_ahead)
        except OSError as e:  # BookingStore.open reports sqlite3 errors as OSError too
            raise SettingsError(f"BOOKING_DB_PATH={settings.booking_db_path!r}: {e}") from None

    factories: dict[str, Callable[[], Tool]] = {"clock": clock_tool, "booking": booking}
    return ToolRegistry([factories[name]() for name in settings.tool_names if name in factories])
