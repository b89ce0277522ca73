"""Waiting lists: each show's entries in first-come order, with their status, the offer made to
them (its booking and expiry) and why they ended. View: `read.waitlist_entries`.

A waiting list's events name the list, not the show: the show of each list is kept in
`waiting_lists` (from its Created event), as the tickets read model does for door lists.
An entry's order is the list's version when it joined (`sequence`): the order the show's
writer decided, which the clock need not agree with. Its position in the queue is not stored,
it changes whenever someone ahead of it leaves: the queries below count it.

The queries over the view live here too (`entries_of_customer`, `entries_of_show`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from domain.waitlist import FULFILLED, LAPSED, LEFT, OFFERED, WAITING, WaitingList
from infra.log_follower import LoggedEvent
from projections.base import Page, Projection, event_type
from projections.tables import Table

STATUSES: Final = (WAITING, OFFERED, FULFILLED, LAPSED, LEFT)  # an entry's, in its order

WAITING_LISTS = Table(
    "waiting_lists",
    columns=(("waiting_list_id", "uuid NOT NULL"), ("show_id", "uuid NOT NULL")),
    key=("waiting_list_id",),
)
WAITLIST_ENTRIES = Table(
    "waitlist_entries",
    columns=(
        ("entry_id", "uuid NOT NULL"),
        ("show_id", "uuid NOT NULL"),
        ("customer_id", "uuid NOT NULL"),
        ("quantity", "integer NOT NULL"),
        ("section", "text"),  # NULL: any section
        ("status", "text NOT NULL"),
        ("sequence", "integer NOT NULL"),  # the list's version at joining: first come, first
        ("joined_at", "timestamptz NOT NULL"),
        ("booking_id", "uuid"),  # the offer's booking, once offered
        ("offer_seats", "jsonb"),  # what the offer holds (NULL: no offer yet)
        ("offer_general", "jsonb"),
        ("expires_at", "timestamptz"),  # the offer's
        ("offered_at", "timestamptz"),
        ("reason", "text"),  # why it left or its offer lapsed
        ("updated_at", "timestamptz NOT NULL"),
    ),
    key=("entry_id",),
    indexes=("(show_id, sequence)", "(customer_id, joined_at DESC, entry_id DESC)"),
)

CREATED = event_type(WaitingList, "Created")
ENTRY_JOINED = event_type(WaitingList, "EntryJoined")
JOINED = ENTRY_JOINED.__qualname__


class Waitlist(Projection):
    kind = "waitlist"
    tables = (WAITING_LISTS, WAITLIST_ENTRIES)
    views = {"waitlist_entries": "waitlist_entries"}

    def __init__(self, generation: int) -> None:
        super().__init__(generation)
        self._shows: dict[UUID, UUID] = {}  # waiting list -> show (never changes)

    def prepare(
        self, conn: psycopg.Connection[Any], changes: Page, page: Sequence[LoggedEvent]
    ) -> None:
        """Joins need their list's show (from an earlier page, unless cached)."""
        lists = {
            logged.event.originator_id
            for logged in page
            if logged.type_name == JOINED and logged.event.originator_id not in self._shows
        }
        if lists:
            changes[WAITING_LISTS].load(conn, self.schema, lists)

    def _show_of(self, page: Page, waiting_list_id: UUID) -> UUID:
        show_id = self._shows.get(waiting_list_id)
        if show_id is None:
            row = page[WAITING_LISTS].get(waiting_list_id)
            if row is None:  # cannot happen: a list's Created comes first
                raise LookupError(f"waiting list {waiting_list_id} was never created")
            show_id = self._shows[waiting_list_id] = row["show_id"]
        return show_id

    def _created(self, page: Page, e: Any) -> None:
        page[WAITING_LISTS].insert({"waiting_list_id": e.originator_id, "show_id": e.show_id})

    def _joined(self, page: Page, e: Any) -> None:
        page[WAITLIST_ENTRIES].insert(
            {
                "entry_id": e.entry_id,
                "show_id": self._show_of(page, e.originator_id),
                "customer_id": e.customer_id,
                "quantity": e.quantity,
                "section": e.section,
                "status": WAITING,
                "sequence": e.originator_version,
                "joined_at": e.joined_at,
                "booking_id": None,
                "offer_seats": None,
                "offer_general": None,
                "expires_at": None,
                "offered_at": None,
                "reason": None,
                "updated_at": e.timestamp,
            }
        )

    def _change(self, page: Page, e: Any, **values: Any) -> None:
        page[WAITLIST_ENTRIES].set(e.entry_id, updated_at=e.timestamp, **values)

    def _left(self, page: Page, e: Any) -> None:
        self._change(page, e, status=LEFT, reason=e.reason)

    def _offer_made(self, page: Page, e: Any) -> None:
        self._change(
            page,
            e,
            status=OFFERED,
            booking_id=e.booking_id,
            offer_seats=list(e.seats),
            offer_general=dict(e.general),
            expires_at=e.expires_at,
            offered_at=e.timestamp,
        )

    def _offer_accepted(self, page: Page, e: Any) -> None:
        self._change(page, e, status=FULFILLED)

    def _offer_lapsed(self, page: Page, e: Any) -> None:
        self._change(page, e, status=LAPSED, reason=e.reason)

    handlers = {
        CREATED: _created,
        ENTRY_JOINED: _joined,
        event_type(WaitingList, "EntryLeft"): _left,
        event_type(WaitingList, "OfferMade"): _offer_made,
        event_type(WaitingList, "OfferAccepted"): _offer_accepted,
        event_type(WaitingList, "OfferLapsed"): _offer_lapsed,
    }


# --- queries (through the `read` views, on the query API's connections) ---

# The position of a waiting entry: 1 + the entries of its show that joined before it and are
# still on the list (waiting or offered). None for entries no longer waiting.
_POSITION = """
CASE WHEN e.status = 'waiting' THEN (
    SELECT count(*) FROM read.waitlist_entries o
    WHERE o.show_id = e.show_id AND o.sequence <= e.sequence
      AND o.status IN ('waiting', 'offered')
) END AS position
"""
ENTRY_COLUMNS = (
    "e.entry_id, e.show_id, e.customer_id, e.quantity, e.section, e.status, e.sequence, "
    "e.joined_at, e.booking_id, e.offer_seats, e.offer_general, e.expires_at, e.offered_at, "
    "e.reason, e.updated_at"
)
_BEGINNING = (datetime.fromisoformat("9999-12-31T00:00:00+00:00"), UUID(int=2**128 - 1))


def entries_of_customer(
    conn: psycopg.Connection[Any],
    customer_id: UUID,
    limit: int,
    before: tuple[datetime, UUID] | None = None,
) -> list[dict[str, Any]]:
    """The customer's entries across shows, newest first (then by entry id), at most `limit`,
    before the keyset (joined_at, entry_id) of the previous page; with the show's title."""
    at, entry_id = before or _BEGINNING
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {ENTRY_COLUMNS}, s.title, s.time_zone, {_POSITION} "
            "FROM read.waitlist_entries e LEFT JOIN read.shows s ON s.show_id = e.show_id "
            "WHERE e.customer_id = %s AND (e.joined_at, e.entry_id) < (%s, %s) "
            "ORDER BY e.joined_at DESC, e.entry_id DESC LIMIT %s",
            (customer_id, at, entry_id, limit),
        ).fetchall()


def entries_of_show(
    conn: psycopg.Connection[Any], show_id: UUID, limit: int, after_entry: UUID | None = None
) -> list[dict[str, Any]]:
    """The show's entries in first-come order, with their customer's name and e-mail, at most
    `limit`, after the entry `after_entry` (the last of the previous page)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {ENTRY_COLUMNS}, a.name AS customer_name, a.email AS customer_email, "
            f"{_POSITION} "
            "FROM read.waitlist_entries e LEFT JOIN read.accounts a "
            "ON a.account_id = e.customer_id "
            "WHERE e.show_id = %(show)s AND e.sequence > coalesce(("
            "  SELECT sequence FROM read.waitlist_entries "
            "  WHERE entry_id = %(after)s AND show_id = %(show)s), 0) "
            "ORDER BY e.sequence LIMIT %(limit)s",
            {"show": show_id, "after": after_entry, "limit": limit},
        ).fetchall()


# Demand of the entries still waiting, by section (NULL: any section), priced at the section's
# tier, and an entry without a section at the cheapest tier of the show's sections.
DEMAND = """
WITH prices AS (
    SELECT section, price_cents FROM read.show_sections WHERE show_id = %(show)s
), cheapest AS (
    SELECT min(price_cents) AS price_cents FROM prices
)
SELECT e.section, count(*)::bigint AS entries, sum(e.quantity)::bigint AS tickets,
       sum(e.quantity::bigint * coalesce(p.price_cents, c.price_cents, 0))::bigint
           AS revenue_cents
FROM read.waitlist_entries e
LEFT JOIN prices p ON p.section = e.section
CROSS JOIN cheapest c
WHERE e.show_id = %(show)s AND e.status = %(status)s
GROUP BY e.section
ORDER BY e.section NULLS FIRST
"""


def demand_of_show(
    conn: psycopg.Connection[Any], show_id: UUID, status: str = WAITING
) -> list[dict[str, Any]]:
    """Per section (None: any section) the entries in `status`, their tickets and what those
    tickets would sell for."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(DEMAND, {"show": show_id, "status": status}).fetchall()


def status_counts(conn: psycopg.Connection[Any], show_id: UUID) -> dict[str, int]:
    """How many of the show's entries are in each status (every status present)."""
    rows = conn.execute(
        "SELECT status, count(*) FROM read.waitlist_entries WHERE show_id = %s GROUP BY status",
        (show_id,),
    ).fetchall()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts
