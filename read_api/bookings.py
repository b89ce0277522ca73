"""Queries on bookings: one booking (its customer or an admin), a customer's own bookings."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from http_shell.deps import CurrentUser
from http_shell.problems import ProblemError
from projections.registry import BOOKINGS
from read_api.deps import (
    After,
    Cursor,
    Limit,
    ReadSideDep,
    caught_up,
    decode_cursor,
    encode_cursor,
    query,
)
from read_api.models import BookingAnswer, BookingPage, BookingPublic

router = APIRouter(tags=["queries"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "not your booking"},
    404: {"description": "no such booking"},
    503: {"description": "the read models have not reached `after` yet (see Retry-After)"},
}


@router.get("/bookings/{booking_id}", response_model=BookingAnswer, responses=RESPONSES)
async def get_booking(
    booking_id: UUID, user: CurrentUser, read: ReadSideDep, after: After = None
) -> BookingAnswer:
    """A booking, for its customer or an admin. With `after` (the `position` the command API
    returned) the answer includes that command's effect."""
    position = await caught_up(read, [BOOKINGS], after)
    row = await query(read.models.booking, booking_id)
    if row is None:
        raise ProblemError(404, "not-found", "booking not found")
    if row["customer_id"] != user.account_id and not user.is_admin:
        raise ProblemError(403, "forbidden", "only the booking's customer or an admin may see it")
    return BookingAnswer(**BookingPublic.of(row).model_dump(), position=position)


@router.get("/me/bookings", response_model=BookingPage, responses=RESPONSES)
async def my_bookings(
    user: CurrentUser,
    read: ReadSideDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    after: After = None,
) -> BookingPage:
    """The caller's bookings, newest first; `next_cursor` pages on."""
    keyset = decode_cursor(cursor)
    position = await caught_up(read, [BOOKINGS], after)
    rows = await query(read.models.bookings_of, user.account_id, limit + 1, keyset)
    items = [BookingPublic.of(r) for r in rows[:limit]]
    more = len(rows) > limit
    return BookingPage(
        items=items,
        next_cursor=encode_cursor(rows[limit - 1]["placed_at"], items[-1].booking_id)
        if more
        else None,
        position=position,
    )
