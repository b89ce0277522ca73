"""The booking-confirmed e-mail's "You may also like" section (process_managers/notifier.py),
composed from the recommender's suggestions."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from process_managers.integration_events import IntegrationEvent
from process_managers.notifier import compose
from recommender.queries import Recommended, Suggested

SENDER = "tickets@tests.ticketblitz.dev"
BOOKING = UUID("6f1c1e0e-0000-4000-8000-000000000001")


def event(kind: str = "booking.confirmed") -> IntegrationEvent:
    return IntegrationEvent(
        event_id=BOOKING,
        type=kind,
        occurred_at=datetime(2026, 11, 25, 12, tzinfo=UTC),
        position=7,
        show_id=BOOKING,
        booking_id=BOOKING,
        payload={
            "customer": {"id": str(BOOKING), "email": "jo@x.dev", "name": "Jo"},
            "seats": ["A-1-1"],
            "currency": "EUR",
            "paid_cents": 4500,
            "reason": "expired",
            "show": {"title": "Swan Lake", "venue": "Opera", "starts_at": "2027-03-01T20:00"},
        },
    )


def show(title: str, venue: str, day: int) -> Recommended:
    return Recommended(uuid4(), title, "ballet", venue, datetime(2027, 4, day, 20, tzinfo=UTC), 0.9)


SUGGESTED = Suggested(
    shows=[show("Giselle", "Civic Arena", 2), show("The Nutcracker", "Oak Room", 9)],
    pitch="Loved Swan Lake? Giselle is next.",
    source="vector",
    pitch_source="llm",
)


def body(kind: str = "booking.confirmed", suggested: Suggested | None = SUGGESTED) -> str:
    message = compose(event(kind), SENDER, suggested)
    assert message is not None
    content: str = message.get_content()
    return content


def test_the_confirmation_ends_with_the_suggestions_before_the_signature():
    plain = body(suggested=None)
    with_suggestions = body()

    kept, signature = plain.rsplit("\nTicketBlitz\n", 1)
    assert with_suggestions.startswith(kept)
    assert with_suggestions[len(kept) :] == (
        "\nYou may also like\n"
        "\n"
        "Loved Swan Lake? Giselle is next.\n"
        "\n"
        "  * Giselle, Civic Arena, 02 Apr 2027\n"
        "  * The Nutcracker, Oak Room, 09 Apr 2027\n"
        "\n"
        "TicketBlitz\n"
    )
    assert signature == ""


def test_no_shows_means_no_section():
    empty = Suggested(shows=[], pitch="Nothing yet.", source="popular", pitch_source="template")
    assert body(suggested=empty) == body(suggested=None)


def test_other_emails_suggest_nothing():
    for kind in ("booking.cancelled", "booking.expired", "booking.refunded"):
        assert "You may also like" not in body(kind)
        assert body(kind) == body(kind, suggested=None)
