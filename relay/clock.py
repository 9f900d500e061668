"""Time as Relay sees it.

Everything that compares against "now" (event age, log timestamps) asks the
runtime's clock, so tests and replays can set the time instead of patching.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that stays where it is set; for tests and replays."""

    def __init__(self, at: datetime) -> None:
        self.set(at)

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at.astimezone(timezone.utc)

    def advance(self, by: timedelta) -> None:
        self._at += by

    def now(self) -> datetime:
        return self._at
