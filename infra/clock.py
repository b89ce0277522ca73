"""The wall clock the commands decide time-bound rules by (tests pass another)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
