"""The e-mail a ticket holder gets when their show is rescheduled (process_managers/notifier.py),
composed from a `booking.rescheduled` integration event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from process_managers.integration_events import IntegrationEvent
from process_managers.notifier import SUBJECTS, compose

SENDER = "tickets@tests.ticketblitz.dev"
BOOKING = UUID("6f1c1e0e-0000-4000-8000-000000000002")


def rescheduled(paid_cents: int = 9000) -> IntegrationEvent:
    payload: dict[str, Any] = {
        "status": "confirmed",
        "customer": {"id": str(BOOKING), "email": "jo@x.dev", "name": "Jo"},
        "seats": ["A-1-1", "A-1-2"],
        "general": {},
        "currency": "EUR",
        "paid_cents": paid_cents,
        "refunded_cents": 0,
        "show": {"title": "Swan Lake", "venue": "Opera", "starts_at": "2027-03-08T20:00:00+00:00"},
        "reschedule": {
            "starts_at": "2027-03-08T20:00:00+00:00",
            "previous_starts_at": "2027-03-01T19:30:00+00:00",
        },
    }
    return IntegrationEvent(
        event_id=BOOKING,
        type="booking.rescheduled",
        occurred_at=datetime(2026, 11, 25, 12, tzinfo=UTC),
        position=9,
        show_id=BOOKING,
        booking_id=BOOKING,
        payload=payload,
    )


def test_the_reschedule_e_mail_names_the_new_date_in_its_subject():
    message = compose(rescheduled(), SENDER)

    assert message is not None
    assert "booking.rescheduled" in SUBJECTS
    assert message["Subject"] == "New date for Swan Lake: Mon 08 Mar 2027, 20:00 UTC"
    assert message["To"] == "jo@x.dev"
    assert message["X-TicketBlitz-Event-Type"] == "booking.rescheduled"


def test_the_reschedule_e_mail_offers_a_full_refund_until_the_new_start():
    message = compose(rescheduled(), SENDER)

    assert message is not None
    body = message.get_content()
    assert "now starts on Mon 08 Mar 2027, 20:00 UTC" in body
    assert "it was to start on Mon 01 Mar 2027, 19:30 UTC" in body
    assert "seat A-1-1" in body and "seat A-1-2" in body
    assert "until Mon 08 Mar 2027, 20:00 UTC" in body
    assert "get back what you paid, 90.00 EUR, in full" in body
    assert f"POST /bookings/{BOOKING}/cancel" in body
