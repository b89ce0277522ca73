"""The stored event records as the audit reads them: a stream's raw rows, and events and
aggregates in JSON-friendly form (the log is read and decoded by infra/decoding.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg

from infra.decoding import SELECT_ROWS, Row
from infra.event_store import EVENTS_TABLE

# Attributes every stored event has; the rest of an event is its payload.
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
# Recorded, but never shown: replays and exports are read by people (an argon2 hash is still
# something to crack offline).
SECRETS = frozenset({"password_hash"})
REDACTED = "[redacted]"


def stream_rows(
    conn: psycopg.Connection[Any],
    stream_id: UUID,
    after_version: int = 0,
    limit: int | None = None,
) -> list[Row]:
    """A stream's records after a version (at most `limit`), in version order."""
    sql = (
        f"{SELECT_ROWS} WHERE originator_id = %s AND originator_version > %s "
        "ORDER BY originator_version"
    )
    params: tuple[Any, ...] = (stream_id, after_version)
    if limit is not None:
        sql += " LIMIT %s"
        params = (*params, limit)
    rows: list[Row] = conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
    return rows


def head_position(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()
    return 0 if row is None else int(row[0])


def type_name(event: object) -> str:
    """`Booking.Placed`: the event class nested in its aggregate."""
    return type(event).__qualname__


def payload_of(event: object) -> dict[str, Any]:
    """What the event says, JSON-friendly, without the envelope (id, version, time)."""
    return {
        k: REDACTED if k in SECRETS else jsonable(v)
        for k, v in vars(event).items()
        if k not in ENVELOPE
    }


def state_of(aggregate: object) -> dict[str, Any]:
    """An aggregate's state, JSON-friendly, with its id, version and times named plainly."""
    state: dict[str, Any] = {}
    for key, value in vars(aggregate).items():
        if key == "_pending_events":
            continue
        name = key.lstrip("_")
        state[name] = REDACTED if name in SECRETS else jsonable(value)
    return state


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):  # a record of a state, e.g. a claim
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    return repr(value)
