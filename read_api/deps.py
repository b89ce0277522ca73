"""What every query endpoint shares: the read side, `after=` (read-your-writes), keyset
cursors, limits, and running queries off the event loop."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import psycopg
from fastapi import Depends, Query, Request
from psycopg_pool import PoolTimeout

from http_shell.problems import ProblemError
from projections.positions import lowest
from projections.read_side import ReadSide

T = TypeVar("T")


def get_read_side(request: Request) -> ReadSide:
    read_side: ReadSide | None = request.app.state.container.read_side
    if read_side is None:
        raise ProblemError(503, "unavailable", "the query side is not configured")
    return read_side


ReadSideDep = Annotated[ReadSide, Depends(get_read_side)]

After = Annotated[
    int | None,
    Query(
        ge=0,
        description="a `position` returned by the command API: the answer reflects at least "
        "that write (the API waits briefly for the read models, else answers 503; a "
        "position beyond the end of the log is a 422)",
    ),
]
Limit = Annotated[int, Query(ge=1, le=100, description="page size")]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL: refuse it as bad input, not a 500
Cursor = Annotated[
    str | None, Query(max_length=200, pattern=NO_NUL, description="`next_cursor` of a page")
]


def unavailable() -> ProblemError:
    return ProblemError(503, "unavailable", "the read models are unavailable", {"Retry-After": "2"})


async def query(function: Callable[..., T], *args: Any) -> T:
    """Run a read-model query on a worker thread; an unreachable database is a 503."""
    try:
        return await asyncio.to_thread(function, *args)
    except (psycopg.OperationalError, PoolTimeout) as error:
        raise unavailable() from error


def refuse_unknown_position(after: int, head: int) -> None:
    """A position the event store has not reached (its `head`) is not one the command API
    returned: 422 `unknown-position`."""
    if after > head:
        raise ProblemError(
            422,
            "unknown-position",
            f"position {after} is beyond the end of the event log ({head})",
            head=head,
        )


async def caught_up(read: ReadSide, names: Collection[str], after: int | None) -> int:
    """Wait (bounded by settings.read_wait_seconds) until the read models `names` have passed
    `after`; returns their position. Never answers from read models that are behind it, nor
    for a position beyond the end of the log (`refuse_unknown_position`)."""
    position = lowest(await query(read.positions.current), names)
    if after is None or position >= after:
        return position
    refuse_unknown_position(after, await query(read.store.head_position))
    position, reached = await _wait(read, names, after)
    if not reached:
        raise ProblemError(
            503,
            "not-caught-up",
            f"the read models have not reached position {after} yet; retry shortly",
            {"Retry-After": "1"},
            position=position,
            requested=after,
        )
    return position


async def _wait(read: ReadSide, names: Collection[str], after: int) -> tuple[int, bool]:
    try:
        return await read.positions.wait_async(names, after, read.settings.read_wait_seconds)
    except (psycopg.OperationalError, PoolTimeout) as error:
        raise unavailable() from error


def encode_cursor(at: datetime, row_id: UUID) -> str:
    raw = json.dumps([at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        decoded = datetime.fromisoformat(at), UUID(row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ProblemError(422, "invalid-cursor", "this cursor is not valid") from None
    if decoded[0].tzinfo is None:
        raise ProblemError(422, "invalid-cursor", "this cursor is not valid")
    return decoded
