"""The suite runs in pytest-xdist workers side by side (`-n 4` in pyproject.toml): most tests wait on audio played
in real time, not on the CPU. A test marked `timing` measures real-time behaviour (how soon an answer comes, whether
it lands in a caller's pause, what a machine under load admits) and would measure its neighbours instead: it runs
alone. `SuiteLock` is a readers-writer lock over two files every worker opens: each test holds the room shared, a
`timing` test holds it alone; the gate, taken first, keeps new tests out while a `timing` test waits for the room
to empty, so it is not starved."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SuiteLock:
    """Shared by every test, held alone by a `timing` one, across the worker processes of one test run."""

    def __init__(self, run_id: str) -> None:
        base = Path(tempfile.gettempdir()) / f"voice-agent-tests-{run_id}"
        self._gate = base.with_suffix(".gate")
        self._room = base.with_suffix(".room")

    @classmethod
    def for_this_run(cls) -> SuiteLock | None:
        """The lock of this xdist run; None when the tests run in one process (nothing runs beside them)."""
        run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        return cls(run_id) if run_id and os.environ.get("PYTEST_XDIST_WORKER") else None

    @contextmanager
    def held(self, *, alone: bool) -> Iterator[None]:
        with open(self._gate, "a") as gate, open(self._room, "a") as room:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            finally:
                if not alone:
                    fcntl.flock(gate, fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(room, fcntl.LOCK_UN)
                if alone:
                    fcntl.flock(gate, fcntl.LOCK_UN)
