"""The caller's tickets, whoever bought them: `GET /me/tickets`, from the tickets read model by
holder (tickets bought, and tickets given to the caller, also those given to their e-mail
before they registered); secrets signed on the fly, like a booking's tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from fastapi import APIRouter, Query, Request
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from http_shell.deps import CurrentUser
from projections.registry import TICKETS
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
from read_api.models import POSITION
from read_api.tickets import TicketPublic, signed, signer_of

router = APIRouter(tags=["tickets"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid access token (`unauthorized`)"},
    422: {"description": "a bad `status`, `limit` or `cursor` (`invalid-cursor`)"},
    503: {"description": "the read models have not reached `after` yet (`not-caught-up`)"},
}

Status = Literal["valid", "used", "void"]


class MyTicket(TicketPublic):
    issued_at: datetime = Field(description="when the caller got it (bought or given)")


class MyTickets(BaseModel):
    items: list[MyTicket] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
    position: int = POSITION


def tickets_held_by(
    conn: psycopg.Connection[Any],
    holder_id: UUID,
    status: str | None,
    limit: int,
    keyset: tuple[datetime, UUID] | None,
) -> list[dict[str, Any]]:
    """The holder's tickets, newest first (then by ticket id), after `keyset`."""
    sql = (
        "SELECT ticket_id, show_id, booking_id, seat, section, holder_name, status, issued_at "
        "FROM read.tickets WHERE holder_id = %s"
    )
    args: list[Any] = [holder_id]
    if status is not None:
        sql += " AND status = %s"
        args.append(status)
    if keyset is not None:
        sql += " AND (issued_at, ticket_id) < (%s, %s)"
        args.extend(keyset)
    sql += " ORDER BY issued_at DESC, ticket_id DESC LIMIT %s"
    args.append(limit)
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(sql, args).fetchall()


@router.get("/me/tickets", response_model=MyTickets, responses=RESPONSES)
async def my_tickets(
    user: CurrentUser,
    read: ReadSideDep,
    request: Request,
    status: Annotated[Status | None, Query(description="only tickets in this status")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    after: After = None,
) -> MyTickets:
    """The tickets the caller holds, newest first: `{ticket_id, show_id, booking_id, seat,
    section, holder_name, status, secret, issued_at}`. Bought ones and ones given to them
    (`POST /tickets/{id}/transfer`, also before they registered with that e-mail); a ticket
    they gave away stays listed as `void` (its successor is the receiver's). With `after` (a
    `position` of the command API, e.g. a transfer's) the answer includes that write."""
    signer = signer_of(request)
    keyset = decode_cursor(cursor)
    position = await caught_up(read, [TICKETS], after)

    def load() -> list[dict[str, Any]]:
        with read.models.connection() as conn:
            return tickets_held_by(conn, user.account_id, status, limit + 1, keyset)

    rows = await query(load)
    items = [MyTicket(**signed(r, signer).model_dump(), issued_at=r["issued_at"]) for r in rows]
    more = len(items) > limit
    items = items[:limit]
    return MyTickets(
        items=items,
        next_cursor=encode_cursor(items[-1].issued_at, items[-1].ticket_id) if more else None,
        position=position,
    )
