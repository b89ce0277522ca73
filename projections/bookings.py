"""Bookings, by id and by customer. View: `read.bookings`."""

from __future__ import annotations

from typing import Any

from domain.booking import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    HELD,
    PAID,
    PAYMENT_REQUESTED,
    REFUNDED,
    Booking,
)
from projections.base import Page, Projection, event_type
from projections.tables import Table

BOOKINGS = Table(
    "bookings",
    columns=(
        ("booking_id", "uuid NOT NULL"),
        ("show_id", "uuid NOT NULL"),
        ("customer_id", "uuid NOT NULL"),
        ("status", "text NOT NULL"),
        ("seats", "jsonb NOT NULL"),
        ("general", "jsonb NOT NULL"),
        ("quantity", "integer NOT NULL"),
        ("amount_cents", "bigint NOT NULL"),
        ("currency", "text NOT NULL"),
        ("hold_expires_at", "timestamptz NOT NULL"),
        ("payment_method", "text"),
        ("payment_intent_id", "text"),
        ("paid_cents", "bigint NOT NULL"),
        ("refunded_cents", "bigint NOT NULL"),
        ("refund_id", "text"),
        ("reason", "text"),
        ("placed_at", "timestamptz NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
        ("version", "integer NOT NULL"),
        ("offer", "boolean NOT NULL"),  # held for a waiting-list entry (an offer)
        ("code", "text"),  # the presale code it was booked with
    ),
    key=("booking_id",),
    # (show_id, placed_at, booking_id): a show's attendee list, page by page (read_api/reports.py)
    indexes=("(customer_id, placed_at DESC, booking_id DESC)", "(show_id, placed_at, booking_id)"),
)


class Bookings(Projection):
    kind = "bookings"
    tables = (BOOKINGS,)
    views = {"bookings": "bookings"}

    def _placed(self, page: Page, e: Any) -> None:
        page[BOOKINGS].insert(
            {
                "booking_id": e.originator_id,
                "show_id": e.show_id,
                "customer_id": e.customer_id,
                "status": HELD,
                "seats": e.seats,
                "general": e.general,
                "quantity": len(e.seats) + sum(e.general.values()),
                "amount_cents": e.amount_cents,
                "currency": e.currency,
                "hold_expires_at": e.hold_expires_at,
                "payment_method": e.payment_method,
                "payment_intent_id": None,
                "paid_cents": 0,
                "refunded_cents": 0,
                "refund_id": None,
                "reason": None,
                "placed_at": e.timestamp,
                "updated_at": e.timestamp,
                "version": e.originator_version,
                # Placed events stored before offers and codes existed lack them.
                "offer": bool(getattr(e, "offer", False)),
                "code": getattr(e, "code", None),
            }
        )

    def _change(self, page: Page, e: Any, **values: Any) -> None:
        page[BOOKINGS].set(
            e.originator_id, updated_at=e.timestamp, version=e.originator_version, **values
        )

    def _payment_requested(self, page: Page, e: Any) -> None:
        self._change(page, e, status=PAYMENT_REQUESTED, payment_intent_id=e.payment_intent_id)

    def _payment_succeeded(self, page: Page, e: Any) -> None:
        self._change(page, e, status=PAID, payment_intent_id=e.payment_intent_id)
        page[BOOKINGS].add(e.originator_id, paid_cents=e.amount_cents)

    def _late_payment(self, page: Page, e: Any) -> None:
        self._change(page, e, payment_intent_id=e.payment_intent_id)
        page[BOOKINGS].add(e.originator_id, paid_cents=e.amount_cents)

    def _payment_failed(self, page: Page, e: Any) -> None:
        self._change(page, e, status=CANCELLED, reason=e.reason)

    def _confirmed(self, page: Page, e: Any) -> None:
        self._change(page, e, status=CONFIRMED)

    def _cancelled(self, page: Page, e: Any) -> None:
        self._change(page, e, status=CANCELLED, reason=e.reason)

    def _expired(self, page: Page, e: Any) -> None:
        self._change(page, e, status=EXPIRED, reason="hold expired")

    def _refunded(self, page: Page, e: Any) -> None:
        self._change(page, e, status=REFUNDED, refund_id=e.refund_id)
        page[BOOKINGS].add(e.originator_id, refunded_cents=e.amount_cents)

    handlers = {
        event_type(Booking, "Placed"): _placed,
        event_type(Booking, "PaymentRequested"): _payment_requested,
        event_type(Booking, "PaymentSucceeded"): _payment_succeeded,
        event_type(Booking, "LatePaymentReceived"): _late_payment,
        event_type(Booking, "PaymentFailed"): _payment_failed,
        event_type(Booking, "Confirmed"): _confirmed,
        event_type(Booking, "Cancelled"): _cancelled,
        event_type(Booking, "Expired"): _expired,
        event_type(Booking, "Refunded"): _refunded,
    }
