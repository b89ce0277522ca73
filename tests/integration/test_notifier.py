"""The notifier's e-mails through the real SMTP server: at most once per event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from infra.event_store import PostgresEventStore
from infra.mailer import MailUnavailableError, SmtpMailer
from process_managers.integration_events import IntegrationEvent
from process_managers.notifier import SENDING, SENT, Notifier, compose
from tests.e2e.saga_support import new_database, wait_until
from ticketblitz.embedded import Mailbox, StackEndpoints
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(endpoints: StackEndpoints) -> Iterator[PostgresEventStore]:
    assert endpoints.database_url is not None
    opened = PostgresEventStore(new_database(endpoints.database_url), pool_size=2)
    yield opened
    opened.close()


def mailer_for(endpoints: StackEndpoints) -> SmtpMailer:
    assert endpoints.smtp_host is not None and endpoints.smtp_port is not None
    return SmtpMailer(endpoints.smtp_host, endpoints.smtp_port, "tickets@tests.ticketblitz.dev")


def notifier_with(store: PostgresEventStore, mailer: SmtpMailer) -> Notifier:
    def no_kafka() -> None:
        raise AssertionError("these tests hand the notifier its events directly")

    notifier = Notifier(store, mailer, no_kafka, [])  # type: ignore[arg-type]
    notifier.setup()
    return notifier


def confirmed_event() -> IntegrationEvent:
    booking_id = uuid4()
    return IntegrationEvent(
        event_id=uuid4(),
        type="booking.confirmed",
        occurred_at=datetime.now(UTC),
        position=1,
        show_id=uuid4(),
        booking_id=booking_id,
        payload={
            "status": "confirmed",
            "customer": {"id": str(uuid4()), "email": f"fan-{uuid4().hex[:8]}@x.dev", "name": "Jo"},
            "seats": ["A-1-1", "A-1-2"],
            "general": {"GA": 2},
            "currency": "EUR",
            "paid_cents": 15000,
            "refunded_cents": 0,
            "show": {"title": "Swan Lake", "venue": "Opera", "starts_at": "2027-03-01T20:00"},
        },
    )


def status_of(store: PostgresEventStore, event: IntegrationEvent) -> str | None:
    with store.connection() as conn:
        row = conn.execute(
            "SELECT status FROM sent_emails WHERE event_id = %s", (event.event_id,)
        ).fetchone()
    return None if row is None else str(row[0])


def test_an_event_handled_twice_is_mailed_once(
    store: PostgresEventStore, endpoints: StackEndpoints, mailbox: Mailbox
):
    notifier = notifier_with(store, mailer_for(endpoints))
    event = confirmed_event()
    recipient = event.payload["customer"]["email"]

    notifier.handle(event.to_json())
    notifier.handle(event.to_json())

    mail = mailbox.wait_for(lambda m: m["To"] == recipient, timeout=10)
    assert mail["Subject"] == "Your booking for Swan Lake is confirmed"
    assert mail["X-TicketBlitz-Event-Id"] == str(event.event_id)
    body = mail.get_content()
    assert "seat A-1-2" in body and "2 x general admission (GA)" in body
    assert "Amount paid: 150.00 EUR" in body
    assert [m["To"] for m in mailbox.messages()].count(recipient) == 1
    assert status_of(store, event) == SENT


def test_an_email_in_doubt_is_never_sent_again(
    store: PostgresEventStore, endpoints: StackEndpoints, mailbox: Mailbox
):
    notifier = notifier_with(store, mailer_for(endpoints))
    doubtful, later = confirmed_event(), confirmed_event()
    with store.connection() as conn:
        conn.execute(
            "INSERT INTO sent_emails (event_id, event_type, recipient, status) "
            "VALUES (%s, %s, %s, %s)",
            (doubtful.event_id, doubtful.type, "x", SENDING),
        )

    notifier.handle(doubtful.to_json())
    notifier.handle(later.to_json())

    mailbox.wait_for(lambda m: m["To"] == later.payload["customer"]["email"], timeout=10)
    assert doubtful.payload["customer"]["email"] not in [m["To"] for m in mailbox.messages()]


def test_a_mail_server_that_is_down_leaves_no_trace_and_the_email_goes_later(
    store: PostgresEventStore, endpoints: StackEndpoints, mailbox: Mailbox
):
    down = SmtpMailer("127.0.0.1", free_port(), "tickets@tests.ticketblitz.dev", timeout_seconds=2)
    event = confirmed_event()

    with pytest.raises(MailUnavailableError):
        notifier_with(store, down).handle(event.to_json())
    assert status_of(store, event) is None

    notifier_with(store, mailer_for(endpoints)).handle(event.to_json())
    mailbox.wait_for(lambda m: m["To"] == event.payload["customer"]["email"], timeout=10)
    assert status_of(store, event) == SENT


def test_a_message_abandoned_before_its_final_dot_is_not_delivered(
    endpoints: StackEndpoints, mailbox: Mailbox
):
    mailer = mailer_for(endpoints)
    abandoned, delivered = confirmed_event(), confirmed_event()
    first = compose(abandoned, mailer.sender)
    second = compose(delivered, mailer.sender)
    assert first is not None and second is not None

    mailer.prepare(first).abandon()
    mailer.prepare(second).deliver()

    wait_until(
        lambda: second["To"] in [m["To"] for m in mailbox.messages()], 10, "the second e-mail"
    )
    assert first["To"] not in [m["To"] for m in mailbox.messages()]
