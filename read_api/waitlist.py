"""Queries on the waiting lists (projections/waitlist.py): the caller's entries across shows
(`GET /me/waitlist`) and a show's list for its organiser and admins (`GET /shows/{id}/waitlist`:
its length, the demand it holds in tickets and revenue by section, its entries in order)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from domain.waitlist import OFFERED, WAITING
from http_shell.deps import CurrentUser
from projections.registry import ACCOUNTS, CATALOG, SEAT_MAP, WAITLIST
from projections.waitlist import (
    demand_of_show,
    entries_of_customer,
    entries_of_show,
    status_counts,
)
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
from read_api.reports import COMMON, managed_show

router = APIRouter(tags=["waiting list"])

MINE: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid access token (`unauthorized`)"},
    422: {"description": "a bad `limit` or `cursor` (`invalid-cursor`)"},
    503: {"description": "the read models have not reached `after` yet (`not-caught-up`)"},
}

STATUS = Field(
    description="`waiting` (in the queue), `offered` (seats are held for it: pay the offer's "
    "booking before `expires_at`), `fulfilled` (the offer was paid), `lapsed` (the offer "
    "expired, was declined or cancelled: the entry ends, the seats go to the next one), "
    "`left` (the customer left the list)"
)
QUEUE_POSITION = Field(
    description="while `waiting`: 1 + the entries of the show that joined before it and are "
    "still waiting or offered (null otherwise)"
)


class MyWaitlistEntry(BaseModel):
    entry_id: UUID
    show_id: UUID
    show_title: str | None = Field(description="null once the show left the catalog")
    quantity: int
    section: str | None = Field(description="the section asked for (null: any section)")
    status: str = STATUS
    position: int | None = QUEUE_POSITION
    booking_id: UUID | None = Field(
        description="the offer's booking (held for the caller, `offer: true`) once offered"
    )
    expires_at: datetime | None = Field(description="when the offer lapses unless paid")
    joined_at: datetime
    reason: str | None = Field(description="why it left or its offer lapsed")


class MyWaitlist(BaseModel):
    items: list[MyWaitlistEntry] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
    position: int = POSITION


class ShowWaitlistEntry(BaseModel):
    entry_id: UUID
    customer_id: UUID
    customer_name: str | None
    customer_email: str | None
    quantity: int
    section: str | None = Field(description="the section asked for (null: any section)")
    status: str = STATUS
    position: int | None = QUEUE_POSITION
    joined_at: datetime
    booking_id: UUID | None = Field(description="the offer's booking, once offered")
    offer_seats: list[str] | None = Field(description="the seats the offer holds")
    offer_general: dict[str, int] | None = Field(
        description="general-admission places the offer holds, per section"
    )
    expires_at: datetime | None = Field(description="when the offer lapses unless paid")
    reason: str | None = Field(description="why it left or its offer lapsed")


class Demand(BaseModel):
    entries: int
    tickets: int = Field(description="tickets the entries ask for")
    revenue_cents: int = Field(
        description="what those tickets would sell for at the current prices: the price of "
        "the section's tier, and for an entry without a section the cheapest tier of the "
        "show's sections"
    )


class SectionDemand(Demand):
    section: str | None = Field(description="null: entries that take any section")


class ShowWaitlist(BaseModel):
    show_id: UUID
    currency: str
    length: int = Field(description="entries waiting for an offer")
    offered: int = Field(description="entries with an offer outstanding (seats held for them)")
    statuses: dict[str, int] = Field(description="entries in each status, ever")
    demand: Demand = Field(description="of the entries waiting")
    by_section: list[SectionDemand] = Field(
        description="the demand of the entries waiting, per section asked for"
    )
    entries: list[ShowWaitlistEntry] = Field(
        description="every entry in first-come order (also those that ended), page by page"
    )
    next_cursor: str | None = Field(description="pass as `cursor` for the next page of entries")
    position: int = POSITION


@router.get("/me/waitlist", response_model=MyWaitlist, responses=MINE)
async def my_waitlist(
    user: CurrentUser,
    read: ReadSideDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    after: After = None,
) -> MyWaitlist:
    """The caller's waiting-list entries across shows, newest first: `{entry_id, show_id,
    show_title, quantity, section, status, position, booking_id, expires_at, joined_at,
    reason}`. `position` while waiting; an offered entry names its offer's booking (pay it
    with `POST /bookings/{booking_id}/pay` before `expires_at`). With `after` (a `position` of
    the command API, e.g. a join's) the answer includes that write."""
    keyset = decode_cursor(cursor)
    position = await caught_up(read, [WAITLIST, CATALOG], after)

    def load() -> list[dict[str, Any]]:
        with read.models.connection() as conn:
            return entries_of_customer(conn, user.account_id, limit + 1, keyset)

    rows = await query(load)
    items = [
        MyWaitlistEntry(show_title=r["title"], **{k: r[k] for k in _MINE_COLUMNS})
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return MyWaitlist(
        items=items,
        next_cursor=encode_cursor(items[-1].joined_at, items[-1].entry_id) if more else None,
        position=position,
    )


_MINE_COLUMNS = (
    "entry_id",
    "show_id",
    "quantity",
    "section",
    "status",
    "position",
    "booking_id",
    "expires_at",
    "joined_at",
    "reason",
)


@router.get("/shows/{show_id}/waitlist", response_model=ShowWaitlist, responses=COMMON)
async def show_waitlist(
    show_id: UUID,
    user: CurrentUser,
    read: ReadSideDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    after: After = None,
) -> ShowWaitlist:
    """The show's waiting list, for its organiser and admins: `length` (entries waiting),
    `offered` (offers outstanding), the demand of the waiting entries in tickets and revenue
    (in cents of the show's currency, at the current price of the section's tier; an entry
    that takes any section is priced at the show's cheapest tier), in total and `by_section`,
    and the entries in first-come order with their customer, status and position
    (`next_cursor` pages on through them)."""
    decoded = decode_cursor(cursor)
    show, position = await managed_show(read, user, show_id, [WAITLIST, SEAT_MAP, ACCOUNTS], after)

    def load() -> tuple[dict[str, int], list[dict[str, Any]], list[dict[str, Any]]]:
        with read.models.connection() as conn:
            return (
                status_counts(conn, show_id),
                demand_of_show(conn, show_id, WAITING),
                entries_of_show(conn, show_id, limit + 1, decoded[1] if decoded else None),
            )

    statuses, demand, rows = await query(load)
    by_section = [
        SectionDemand(
            section=d["section"],
            entries=int(d["entries"]),
            tickets=int(d["tickets"]),
            revenue_cents=int(d["revenue_cents"]),
        )
        for d in demand
    ]
    entries = [ShowWaitlistEntry(**{k: r[k] for k in ShowWaitlistEntry.model_fields}) for r in rows]
    more = len(entries) > limit
    entries = entries[:limit]
    return ShowWaitlist(
        show_id=show_id,
        currency=show.currency,
        length=statuses[WAITING],
        offered=statuses[OFFERED],
        statuses=statuses,
        demand=Demand(
            entries=sum(d.entries for d in by_section),
            tickets=sum(d.tickets for d in by_section),
            revenue_cents=sum(d.revenue_cents for d in by_section),
        ),
        by_section=by_section,
        entries=entries,
        next_cursor=encode_cursor(entries[-1].joined_at, entries[-1].entry_id) if more else None,
        position=position,
    )
