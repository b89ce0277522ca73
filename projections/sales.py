"""Sales statistics per show: tickets held and sold right now, bookings by outcome, money taken
and refunded. View: `read.show_sales`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from domain.booking import Booking
from domain.show import Show
from infra.log_follower import LoggedEvent
from projections.base import Page, Projection, event_type
from projections.claims import (
    CLAIM_COUNTS,
    INVENTORIES,
    INVENTORY_CREATED,
    SEATS_HELD,
    SEATS_RELEASED,
    SEATS_SOLD,
    Claims,
)
from projections.tables import Table

SHOW_SALES = Table(
    "show_sales",
    columns=(
        ("show_id", "uuid NOT NULL"),
        ("title", "text NOT NULL"),
        ("currency", "text NOT NULL"),
        ("tickets_held", "integer NOT NULL"),
        ("tickets_sold", "integer NOT NULL"),
        ("bookings_placed", "integer NOT NULL"),
        ("bookings_confirmed", "integer NOT NULL"),
        ("bookings_cancelled", "integer NOT NULL"),
        ("bookings_expired", "integer NOT NULL"),
        ("paid_cents", "bigint NOT NULL"),
        ("refunded_cents", "bigint NOT NULL"),
    ),
    key=("show_id",),
)
BOOKING_SHOWS = Table(
    "booking_shows",
    columns=(("booking_id", "uuid NOT NULL"), ("show_id", "uuid NOT NULL")),
    key=("booking_id",),
)

PLACED = event_type(Booking, "Placed")


class Sales(Projection):
    kind = "sales"
    tables = (SHOW_SALES, BOOKING_SHOWS, INVENTORIES, CLAIM_COUNTS)
    views = {"show_sales": "show_sales"}

    def __init__(self, generation: int) -> None:
        super().__init__(generation)
        self.claims = Claims(CLAIM_COUNTS)

    def prepare(
        self, conn: psycopg.Connection[Any], changes: Page, page: Sequence[LoggedEvent]
    ) -> None:
        self.claims.prepare(conn, self.schema, changes, page)
        later = {
            logged.event.originator_id
            for logged in page
            if isinstance(logged.event, Booking.Event) and type(logged.event) is not PLACED
        }
        changes[BOOKING_SHOWS].load(conn, self.schema, later)

    def _scheduled(self, page: Page, e: Any) -> None:
        page[SHOW_SALES].insert(
            {
                "show_id": e.originator_id,
                "title": e.title,
                "currency": e.currency,
                **dict.fromkeys(SHOW_SALES.column_names[3:], 0),
            }
        )

    def _inventory_created(self, page: Page, e: Any) -> None:
        self.claims.created(page, e)

    def _held(self, page: Page, e: Any) -> None:
        claim = self.claims.held(page, e)
        if claim is not None:
            page[SHOW_SALES].add(claim.show_id, tickets_held=claim.quantity)

    def _sold(self, page: Page, e: Any) -> None:
        claim = self.claims.sold(page, e)
        if claim is not None:
            n = claim.quantity
            page[SHOW_SALES].add(claim.show_id, tickets_held=-n, tickets_sold=n)

    def _released(self, page: Page, e: Any) -> None:
        claim = self.claims.released(page, e)
        if claim is not None:
            column = "tickets_sold" if claim.sold else "tickets_held"
            page[SHOW_SALES].add(claim.show_id, **{column: -claim.quantity})

    def _placed(self, page: Page, e: Any) -> None:
        page[BOOKING_SHOWS].insert({"booking_id": e.originator_id, "show_id": e.show_id})
        page[SHOW_SALES].add(e.show_id, bookings_placed=1)

    def _count(self, page: Page, e: Any, **deltas: int) -> None:
        row = page[BOOKING_SHOWS].get(e.originator_id)
        if row is not None:
            page[SHOW_SALES].add(row["show_id"], **deltas)

    def _confirmed(self, page: Page, e: Any) -> None:
        self._count(page, e, bookings_confirmed=1)

    def _cancelled(self, page: Page, e: Any) -> None:
        self._count(page, e, bookings_cancelled=1)

    def _expired(self, page: Page, e: Any) -> None:
        self._count(page, e, bookings_expired=1)

    def _paid(self, page: Page, e: Any) -> None:
        self._count(page, e, paid_cents=e.amount_cents)

    def _refunded(self, page: Page, e: Any) -> None:
        self._count(page, e, refunded_cents=e.amount_cents)

    handlers = {
        event_type(Show, "Scheduled"): _scheduled,
        INVENTORY_CREATED: _inventory_created,
        SEATS_HELD: _held,
        SEATS_SOLD: _sold,
        SEATS_RELEASED: _released,
        PLACED: _placed,
        event_type(Booking, "Confirmed"): _confirmed,
        event_type(Booking, "Cancelled"): _cancelled,
        event_type(Booking, "PaymentFailed"): _cancelled,
        event_type(Booking, "Expired"): _expired,
        event_type(Booking, "PaymentSucceeded"): _paid,
        event_type(Booking, "LatePaymentReceived"): _paid,
        event_type(Booking, "Refunded"): _refunded,
    }
