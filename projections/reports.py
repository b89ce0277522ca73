"""Organiser reports: who runs each show, and every sale and refund of its tickets as a dated
row, so that the query API can sum them per minute, hour or day with `date_trunc`.
Views: `read.report_shows`, `read.sale_movements` (the attendee list reads `read.bookings`).

A ticket is sold when its booking is confirmed (`Booking.Confirmed`, which the saga writes in
the same transaction as the payment); it is refunded when the money of a confirmed booking
goes back (`Booking.Refunded`), or, for a free booking (nothing to give back), when it is
cancelled. Money taken and returned for a booking that never confirmed (a late payment, a
show cancelled during the payment) sold nothing, so it is not a movement here. A movement
carries the presale code its booking was made with (`code`, NULL: none), for the revenue by
code (`sales_by_code`).

The queries over these views live here too (`sales_series`, `attendee_page`), beside the
tables they read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from domain.booking import Booking
from domain.show import Show
from infra.log_follower import LoggedEvent
from projections.base import Page, Projection, event_type
from projections.tables import Table

REPORT_SHOWS = Table(
    "report_shows",
    columns=(
        ("show_id", "uuid NOT NULL"),
        ("organizer_id", "uuid"),  # NULL: a show only admins manage
        ("currency", "text NOT NULL"),
        ("scheduled_at", "timestamptz NOT NULL"),
    ),
    key=("show_id",),
)
REPORT_BOOKINGS = Table(  # what a later event of a booking needs to count it
    "report_bookings",
    columns=(
        ("booking_id", "uuid NOT NULL"),
        ("show_id", "uuid NOT NULL"),
        ("quantity", "integer NOT NULL"),
        ("amount_cents", "bigint NOT NULL"),
        ("confirmed", "boolean NOT NULL"),  # ever confirmed: its tickets were sold
        ("code", "text"),  # the presale code it was booked with (NULL: none)
    ),
    key=("booking_id",),
)
SALE_MOVEMENTS = Table(
    "sale_movements",
    columns=(
        ("booking_id", "uuid NOT NULL"),
        ("version", "integer NOT NULL"),  # of the booking event that made it
        ("show_id", "uuid NOT NULL"),
        ("at", "timestamptz NOT NULL"),
        ("tickets_sold", "integer NOT NULL"),
        ("revenue_cents", "bigint NOT NULL"),
        ("tickets_refunded", "integer NOT NULL"),
        ("refunded_cents", "bigint NOT NULL"),
        ("code", "text"),  # the booking's presale code (NULL: none)
    ),
    key=("booking_id", "version"),
    indexes=("(show_id, at)",),
)

PLACED = event_type(Booking, "Placed")
CONFIRMED = event_type(Booking, "Confirmed")
CANCELLED = event_type(Booking, "Cancelled")
REFUNDED = event_type(Booking, "Refunded")
_LATER = (CONFIRMED, CANCELLED, REFUNDED)


class Reports(Projection):
    kind = "reports"
    tables = (REPORT_SHOWS, REPORT_BOOKINGS, SALE_MOVEMENTS)
    views = {"report_shows": "report_shows", "sale_movements": "sale_movements"}

    def prepare(
        self, conn: psycopg.Connection[Any], changes: Page, page: Sequence[LoggedEvent]
    ) -> None:
        later = {logged.event.originator_id for logged in page if type(logged.event) in _LATER}
        changes[REPORT_BOOKINGS].load(conn, self.schema, later)

    def _scheduled(self, page: Page, e: Any) -> None:
        page[REPORT_SHOWS].insert(
            {
                "show_id": e.originator_id,
                "organizer_id": e.organizer_id,
                "currency": e.currency,
                "scheduled_at": e.timestamp,
            }
        )

    def _deleted(self, page: Page, e: Any) -> None:
        page[REPORT_SHOWS].delete(e.originator_id)  # it never had a booking: nothing else

    def _placed(self, page: Page, e: Any) -> None:
        page[REPORT_BOOKINGS].insert(
            {
                "booking_id": e.originator_id,
                "show_id": e.show_id,
                "quantity": len(e.seats) + sum(e.general.values()),
                "amount_cents": e.amount_cents,
                "confirmed": False,
                "code": getattr(e, "code", None),  # Placed events from before codes lack it
            }
        )

    def _movement(self, page: Page, e: Any, row: dict[str, Any], **figures: int) -> None:
        page[SALE_MOVEMENTS].insert(
            {
                "booking_id": e.originator_id,
                "version": e.originator_version,
                "show_id": row["show_id"],
                "at": e.timestamp,
                **dict.fromkeys(FIGURES, 0),
                **figures,
                "code": row.get("code"),
            }
        )

    def _confirmed(self, page: Page, e: Any) -> None:
        row = page[REPORT_BOOKINGS].get(e.originator_id)
        if row is None:
            return
        page[REPORT_BOOKINGS].set(e.originator_id, confirmed=True)
        self._movement(
            page, e, row, tickets_sold=row["quantity"], revenue_cents=row["amount_cents"]
        )

    def _cancelled(self, page: Page, e: Any) -> None:
        row = page[REPORT_BOOKINGS].get(e.originator_id)
        if row is not None and row["confirmed"] and row["amount_cents"] == 0:
            self._movement(page, e, row, tickets_refunded=row["quantity"])  # nothing to refund

    def _refunded(self, page: Page, e: Any) -> None:
        row = page[REPORT_BOOKINGS].get(e.originator_id)
        if row is not None and row["confirmed"]:
            self._movement(
                page, e, row, tickets_refunded=row["quantity"], refunded_cents=e.amount_cents
            )

    handlers = {
        event_type(Show, "Scheduled"): _scheduled,
        event_type(Show, "Deleted"): _deleted,
        PLACED: _placed,
        CONFIRMED: _confirmed,
        CANCELLED: _cancelled,
        REFUNDED: _refunded,
    }


# --- queries (through the `read` views, on the query API's connections) ---

BUCKETS = ("minute", "hour", "day")
FIGURES = ("tickets_sold", "revenue_cents", "tickets_refunded", "refunded_cents")


@dataclass(frozen=True)
class ReportShow:
    show_id: UUID
    organizer_id: UUID | None
    currency: str


def report_show(conn: psycopg.Connection[Any], show_id: UUID) -> ReportShow | None:
    row = conn.execute(
        "SELECT organizer_id, currency FROM read.report_shows WHERE show_id = %s", (show_id,)
    ).fetchone()
    return None if row is None else ReportShow(show_id, row[0], row[1])


def sales_by_code(
    conn: psycopg.Connection[Any], show_id: UUID, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per presale code, the tickets sold and revenue in [start, end), net of refunds
    (bookings without a code left out), by code."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT code, sum(tickets_sold - tickets_refunded)::bigint AS tickets, "
            "sum(revenue_cents - refunded_cents)::bigint AS revenue_cents "
            "FROM read.sale_movements WHERE show_id = %s AND code IS NOT NULL "
            "AND at >= %s AND at < %s GROUP BY code ORDER BY code",
            (show_id, start, end),
        ).fetchall()
    return [
        {"code": r["code"], "tickets": int(r["tickets"]), "revenue_cents": int(r["revenue_cents"])}
        for r in rows
    ]


def movement_span(conn: psycopg.Connection[Any], show_id: UUID) -> tuple[datetime, datetime] | None:
    """The times of the show's first and last sale or refund (None: none yet)."""
    row = conn.execute(
        "SELECT min(at), max(at) FROM read.sale_movements WHERE show_id = %s", (show_id,)
    ).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])


def sales_series(
    conn: psycopg.Connection[Any], show_id: UUID, bucket: str, start: datetime, end: datetime
) -> dict[datetime, dict[str, int]]:
    """The show's sales and refunds in [start, end), summed per `bucket` (UTC), by the bucket's
    start; buckets without any are left out."""
    if bucket not in BUCKETS:
        raise ValueError(bucket)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT date_trunc(%s, at, 'UTC') AS bucket_start, "
            "sum(tickets_sold)::bigint AS tickets_sold, "
            "sum(revenue_cents)::bigint AS revenue_cents, "
            "sum(tickets_refunded)::bigint AS tickets_refunded, "
            "sum(refunded_cents)::bigint AS refunded_cents "
            "FROM read.sale_movements WHERE show_id = %s AND at >= %s AND at < %s "
            "GROUP BY 1 ORDER BY 1",
            (bucket, show_id, start, end),
        ).fetchall()
    return {r["bucket_start"]: {k: int(r[k]) for k in FIGURES} for r in rows}


ATTENDEES = """
SELECT b.booking_id, b.customer_id, a.name AS customer_name, a.email AS customer_email,
       b.seats, b.general, b.quantity, b.status, b.amount_cents, b.paid_cents,
       b.refunded_cents, b.currency, b.reason, b.placed_at, b.updated_at
FROM read.bookings b LEFT JOIN read.accounts a ON a.account_id = b.customer_id
WHERE b.show_id = %(show)s AND (b.placed_at, b.booking_id) > (%(at)s, %(id)s)
ORDER BY b.placed_at, b.booking_id
LIMIT %(limit)s
"""
_BEGINNING = (datetime.fromisoformat("0001-01-01T00:00:00+00:00"), UUID(int=0))


def attendee_page(
    conn: psycopg.Connection[Any],
    show_id: UUID,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The show's bookings in the order they were placed, with their customer's name and
    e-mail, at most `limit`, after the keyset (placed_at, booking_id) of the previous page."""
    at, booking_id = after or _BEGINNING
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            ATTENDEES, {"show": show_id, "at": at, "id": booking_id, "limit": limit}
        ).fetchall()
