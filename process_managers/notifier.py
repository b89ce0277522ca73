"""Notifications: e-mails to customers about their bookings, from the integration events that
the relay publishes to Kafka (consumed in a consumer group, so notifiers scale out).

At most one e-mail per event, deduplicated by event id in PostgreSQL (`sent_emails`):

1. an event with a row already is skipped (sent, refused, or in doubt);
2. the mailer transmits the message up to the final "." (nothing is delivered yet);
3. a row `sending` is inserted and committed: the reservation (if another notifier reserved
   the event first, the message is abandoned);
4. the final "." asks the server to deliver; 5. the row becomes `sent`.

A crash before 3 delivers nothing and leaves no row: the Kafka record, whose offset is
committed only after it was handled, is consumed again and the e-mail sent then. A crash
between 3 and 5 (a few milliseconds around one packet and its answer) leaves a `sending` row
whose e-mail may or may not have gone out; it is never re-sent (at most once) and is counted
as "in doubt" when a notifier starts. SMTP has no idempotency key that would close that window.

A booking cancelled because its show was cancelled (`show_cancelled` in the payload) gets one
e-mail, "Cancelled: <show> will not take place", which also says that what was paid is refunded
in full; the refund of that money then sends no second e-mail (`booking.refunded` is skipped
when the booking was paid before it was cancelled; money that arrived later, which the first
e-mail did not mention, still gets its refund e-mail). So a customer hears once per booking.

A ticket holder whose show was rescheduled gets one e-mail per reschedule (`booking.rescheduled`,
from the booking's `RescheduleAnnounced`, process_managers/reschedule_notices.py): the new date,
and that the booking may be cancelled with a full refund until the new start.

A booking-confirmed e-mail carries the tickets: a PDF (one page and QR code per ticket) and a
calendar invite (.ics), from the `Attach` hook (process_managers/ticket_mail.py), derived from
the event alone, so the same e-mail is built however often it is retried.

Times are shown on the venue's clock (the show's time zone) and money with its currency's
decimals (domain/money.py: JPY none, KWD three).

A fan the waiting list offers seats to gets one e-mail per offer (`waitlist.offered`, on the
waitlist topic): what is held, until when (the venue's clock) and the link to pay it
(`public_url`, process_managers/waitlist_mail.py).

A booking-confirmed e-mail also suggests other shows ("You may also like": recommendations and
a short pitch) through the `Suggest` port that the composition root plugs in (the recommender).
The suggestions are made before step 2, within `suggest_timeout` seconds; when they fail or are
late, the e-mail goes out without them, exactly as it would without a recommender.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol
from uuid import UUID

import psycopg
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import ValidationError

from commands.ports import AggregateHistory, Connections
from commands.venue_time import local_time_of
from domain.booking import PAYMENT_EVENTS, BookingEvents
from domain.money import money
from infra import tracing
from infra.kafka import TopicIncarnations
from infra.mailer import KIND_HEADER, MailRejectedError, MailUnavailableError, SmtpMailer
from process_managers.integration_events import IntegrationEvent
from process_managers.transfer_mail import TRANSFER_TYPES, compose_transfer
from process_managers.waitlist_mail import DEFAULT_PUBLIC_URL, WAITLIST_MAIL_TYPES, compose_offer

log = logging.getLogger(__name__)

SENT_EMAILS_DDL = """
CREATE TABLE IF NOT EXISTS sent_emails (
    event_id uuid PRIMARY KEY,
    event_type text NOT NULL,
    recipient text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
)
"""
SENDING, SENT, REFUSED = "sending", "sent", "refused"
RETRY_MAX_SECONDS = 4.0
POLL_BUDGET_SECONDS = 2.0  # + one e-mail (suggestions at most 5 s) < max poll interval (10 s)

SUBJECTS = {
    "booking.confirmed": "Your booking for {title} is confirmed",
    "booking.cancelled": "Your booking for {title} was cancelled",
    "booking.payment_failed": "Payment declined: your booking for {title} was cancelled",
    "booking.expired": "Your hold for {title} has expired",
    "booking.refunded": "Refund issued for your booking for {title}",
    "booking.rescheduled": "New date for {title}: {starts_at}",
}
SHOW_CANCELLED_SUBJECT = "Cancelled: {title} will not take place"


class SuggestedShow(Protocol):
    @property
    def title(self) -> str: ...
    @property
    def venue(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...


class Suggestions(Protocol):
    """Shows to suggest in a booking-confirmed e-mail, and a few words about them."""

    @property
    def shows(self) -> Sequence[SuggestedShow]: ...
    @property
    def pitch(self) -> str: ...


class NotifierStore(Connections, AggregateHistory, Protocol):
    """The `sent_emails` table, and the bookings' histories."""


# (customer id, id of the show just booked) -> suggestions, or None for none.
Suggest = Callable[[UUID, UUID], Suggestions | None]
# Adds attachments to the e-mail composed for an event (process_managers/ticket_mail.py: the
# tickets' PDF and calendar invite of a booking-confirmed e-mail); the same bytes every time.
Attach = Callable[[IntegrationEvent, EmailMessage], None]


def compose(
    event: IntegrationEvent,
    sender: str,
    suggestions: Suggestions | None = None,
    public_url: str = DEFAULT_PUBLIC_URL,
) -> EmailMessage | None:
    """The e-mail an event deserves, or None (not every event is worth an e-mail); a
    booking-confirmed one ends with the `suggestions`, if any; links start at `public_url`."""
    if event.type in TRANSFER_TYPES:  # a ticket's receiver (process_managers/transfer_mail.py)
        return compose_transfer(event, sender)
    if event.type in WAITLIST_MAIL_TYPES:  # an offer (process_managers/waitlist_mail.py)
        return compose_offer(event, sender, public_url)
    subject = SUBJECTS.get(event.type)
    payload = event.payload
    if event.type == "booking.cancelled" and payload.get("show_cancelled"):
        subject = SHOW_CANCELLED_SUBJECT
    recipient = (payload.get("customer") or {}).get("email")
    if subject is None or not recipient:
        return None
    show = payload.get("show") or {}
    title = show.get("title") or "your show"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    new_start = (payload.get("reschedule") or {}).get("starts_at")
    zone = show.get("time_zone")
    message["Subject"] = subject.format(title=title, starts_at=readable_time(new_start, zone))
    message["Message-ID"] = f"<{event.event_id}@ticketblitz>"
    message["X-TicketBlitz-Event-Id"] = str(event.event_id)
    message["X-TicketBlitz-Event-Type"] = event.type
    message["X-TicketBlitz-Booking-Id"] = str(event.booking_id)
    message.set_content(_body(event, payload, show, title, suggestions))
    return message


def _body(
    event: IntegrationEvent,
    payload: dict[str, Any],
    show: dict[str, Any],
    title: str,
    suggestions: Suggestions | None,
) -> str:
    name = (payload.get("customer") or {}).get("name") or "there"
    currency = payload.get("currency", "")
    tickets = [f"  seat {s}" for s in payload.get("seats", [])] + [
        f"  {n} x general admission ({section})"
        for section, n in (payload.get("general") or {}).items()
    ]
    starts = readable_time(show.get("starts_at"), show.get("time_zone"))
    when = f" at {show['venue']} on {starts}" if show.get("venue") else ""
    if event.type == "booking.cancelled" and payload.get("show_cancelled"):
        return _show_cancelled_body(event, payload, name, title, when, tickets)
    if event.type == "booking.rescheduled":
        return _rescheduled_body(event, payload, name, title, show, tickets)
    lines = [f"Hello {name},", "", f"Booking {event.booking_id} for {title}{when}:"]
    if event.type == "booking.confirmed":
        lines += ["is confirmed. Your tickets:", *tickets]
        lines.append(f"Amount paid: {money(int(payload.get('paid_cents', 0)), currency)}")
        if suggestions is not None and suggestions.shows:
            lines += ["", *_you_may_also_like(suggestions)]
    elif event.type == "booking.refunded":
        lines.append(
            f"we refunded {money(int(payload.get('refunded_cents', 0)), currency)} "
            "to your payment method."
        )
    else:
        lines += ["is over, and these tickets are released:", *tickets]
        lines.append(f"Reason: {payload.get('reason') or 'not given'}")
        if int(payload.get("paid_cents", 0)) > int(payload.get("refunded_cents", 0)):
            lines.append("Your payment will be refunded; a confirmation follows.")
    return "\n".join([*lines, "", "TicketBlitz", ""])


def _show_cancelled_body(
    event: IntegrationEvent,
    payload: dict[str, Any],
    name: str,
    title: str,
    when: str,
    tickets: list[str],
) -> str:
    due = int(payload.get("paid_cents", 0)) - int(payload.get("refunded_cents", 0))
    lines = [
        f"Hello {name},",
        "",
        f"We are sorry: {title}{when} is cancelled and will not take place.",
        f"Your booking {event.booking_id} is cancelled and these tickets are void:",
        *tickets,
        "",
    ]
    if due > 0:
        amount = money(due, str(payload.get("currency", "")))
        lines.append(
            f"We are refunding what you paid, {amount}, in full to your payment method. "
            "You need do nothing; your bank may take a few days to show it."
        )
    else:
        lines.append(
            "You were not charged for it. Should a payment for it still go through, "
            "it is refunded in full."
        )
    return "\n".join([*lines, "", "TicketBlitz", ""])


def readable_time(iso: str | None, zone: str | None = None) -> str:
    """A show's time as people read it, on the venue's clock (`zone`, the show's time zone;
    None: UTC), e.g. "Sat 12 Dec 2026, 20:00 CET (UTC+01:00)" or "Sat 12 Dec 2026, 20:00 UTC"."""
    return local_time_of(iso, zone)


def _rescheduled_body(
    event: IntegrationEvent,
    payload: dict[str, Any],
    name: str,
    title: str,
    show: dict[str, Any],
    tickets: list[str],
) -> str:
    reschedule = payload.get("reschedule") or {}
    zone = show.get("time_zone")
    new_start = readable_time(reschedule.get("starts_at"), zone)
    at = f" at {show['venue']}" if show.get("venue") else ""
    paid = int(payload.get("paid_cents", 0)) - int(payload.get("refunded_cents", 0))
    refund = (
        f"get back what you paid, {money(paid, str(payload.get('currency', '')))}, in full"
        if paid > 0
        else "get back in full whatever you paid"
    )
    lines = [
        f"Hello {name},",
        "",
        f"{title}{at} has a new date: it now starts on {new_start} "
        f"(it was to start on {readable_time(reschedule.get('previous_starts_at'), zone)}).",
        f"Your booking {event.booking_id} is valid for the new date. Your tickets:",
        *tickets,
        "",
        f"If the new date does not suit you, you may cancel the booking until {new_start} and "
        f"{refund}: cancel it in your bookings, or with POST /bookings/{event.booking_id}/cancel.",
    ]
    return "\n".join([*lines, "", "TicketBlitz", ""])


def _you_may_also_like(suggestions: Suggestions) -> list[str]:
    return [
        "You may also like",
        "",
        suggestions.pitch.strip(),
        "",
        *(f"  * {s.title}, {s.venue}, {s.starts_at:%d %b %Y}" for s in suggestions.shows),
    ]


class Notifier:
    def __init__(
        self,
        store: NotifierStore,
        mailer: SmtpMailer,
        consumer_factory: Callable[[], KafkaConsumer],
        topics: list[str],
        suggest: Suggest | None = None,
        suggest_timeout: float = 5.0,
        attach: Attach | None = None,
        public_url: str = DEFAULT_PUBLIC_URL,
    ) -> None:
        self._store = store
        self._mailer = mailer
        self._consumer_factory = consumer_factory
        self._topics = topics
        self._incarnations = TopicIncarnations()
        self._suggest = suggest
        self._suggest_timeout = suggest_timeout
        self._attach = attach
        self._public_url = public_url  # where fans reach TicketBlitz: links in e-mails
        self._suggesting = concurrent.futures.ThreadPoolExecutor(
            2, thread_name_prefix="notifier-suggest"
        )

    def setup(self) -> None:
        with self._store.connection() as conn:
            conn.execute(SENT_EMAILS_DDL)
            row = conn.execute(
                "SELECT count(*) FROM sent_emails WHERE status = %s", (SENDING,)
            ).fetchone()
        if row and row[0]:
            log.warning("%d e-mails are in doubt (a notifier died while sending them)", row[0])

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                self.setup()
                consumer = self._consumer_factory()
                consumer.subscribe(self._topics)
                while not stop.is_set():
                    if self.consume(consumer):
                        backoff = 0.5
                    else:  # the mail server is unhappy: give it a moment, but poll again
                        stop.wait(backoff)  # within the max poll interval, to stay in the group
                        backoff = min(backoff * 2, RETRY_MAX_SECONDS)
            except (KafkaError, psycopg.Error, OSError) as error:
                log.warning("notifier: %s; retrying in %.1fs", error, backoff)
                stop.wait(backoff)  # short: e-mails should follow soon after an outage ends
                backoff = min(backoff * 2, RETRY_MAX_SECONDS)
            finally:
                if consumer is not None:
                    consumer.close()
                self._mailer.disconnect()

    def consume(self, consumer: KafkaConsumer) -> bool:
        """Handle one poll's records, commit their offsets; False if sending had to stop."""
        healthy = True
        done: dict[TopicPartition, OffsetAndMetadata] = {}
        # Suggestions can take seconds per e-mail: a poll's records that would take the
        # consumer past its max poll interval (and out of the group) wait for the next poll.
        deadline = time.monotonic() + POLL_BUDGET_SECONDS
        self._incarnations.rewind_recreated(consumer)
        polled = consumer.poll(timeout_ms=500, max_records=200)
        # Records fetched at an old incarnation's offset (noticed by this very poll) may
        # start in the middle of the new topic: rewound, they come again from its start.
        recreated = self._incarnations.rewind_recreated(consumer)
        for partition, records in polled.items():
            if partition.topic in recreated:
                continue
            for record in records:
                if not healthy or time.monotonic() > deadline:
                    consumer.seek(partition, record.offset)  # not handled: next poll
                    break
                try:
                    # In the trace of the event (the relay's header), when tracing.
                    with tracing.consumer_span(partition.topic, record.headers, __name__):
                        self.handle(record.value)
                except MailUnavailableError as error:
                    log.warning("notifier: mail server unavailable: %s", error)
                    consumer.seek(partition, record.offset)  # this record again, later
                    healthy = False
                    break
                done[partition] = OffsetAndMetadata(record.offset + 1, "", -1)
        if done:
            consumer.commit(done)
        return healthy

    def handle(self, raw: bytes) -> None:
        try:
            event = IntegrationEvent.from_json(raw)
        except ValidationError as error:
            log.error("notifier: skipping a malformed integration event: %s", error)
            return
        if self.refund_announced(event):
            return  # the show-cancelled e-mail said so already: one e-mail per booking
        message = compose(
            event, self._mailer.sender, self.suggestions(event), public_url=self._public_url
        )
        if message is not None:
            if self._attach is not None and not self._handled(event.event_id):
                self._attach(event, message)
            # The kind of e-mail in the trace, never the address.
            kind = {"email.kind": str(message[KIND_HEADER] or event.type)}
            with tracing.span_in_trace_of("smtp.send", None, attributes=kind):
                self.send_once(event.event_id, event.type, message)

    def refund_announced(self, event: IntegrationEvent) -> bool:
        """Whether this is the refund of a booking whose show was cancelled after it was paid:
        its show-cancelled e-mail announced this refund (read from the booking's history)."""
        if event.type != "booking.refunded" or not event.payload.get("show_cancelled"):
            return False
        assert event.booking_id is not None  # booking.* events carry one
        paid = False
        for domain_event in self._store.history(event.booking_id):
            kind = type(domain_event).__qualname__
            if kind in PAYMENT_EVENTS:
                paid = True
            elif kind == BookingEvents.CANCELLED:
                return paid
        return False

    def suggestions(self, event: IntegrationEvent) -> Suggestions | None:
        """What a booking-confirmed e-mail suggests, within `suggest_timeout` seconds; None
        for other events, e-mails already handled, and whenever the suggestions fail."""
        customer = (event.payload.get("customer") or {}).get("id")
        if self._suggest is None or event.type != "booking.confirmed" or not customer:
            return None
        if self._handled(event.event_id):
            return None
        try:
            asked = self._suggesting.submit(self._suggest, UUID(str(customer)), event.show_id)
            return asked.result(timeout=self._suggest_timeout)
        except concurrent.futures.TimeoutError:
            log.warning(
                "notifier: no suggestions within %.1fs; sending without", self._suggest_timeout
            )
        except Exception as error:  # whatever the recommender raised: the e-mail goes anyway
            log.warning("notifier: suggestions failed (%r); sending without", error)
        return None

    def close(self) -> None:
        """Stop waiting for suggestions still being made (after the notifier's thread ended)."""
        self._suggesting.shutdown(wait=False, cancel_futures=True)

    def _handled(self, event_id: UUID) -> bool:
        with self._store.connection() as conn:
            found = conn.execute("SELECT 1 FROM sent_emails WHERE event_id = %s", (event_id,))
            return found.fetchone() is not None

    def send_once(self, event_id: UUID, event_type: str, message: EmailMessage) -> None:
        if self._handled(event_id):
            return
        with self._store.connection() as conn:
            recipient = str(message["To"])
            if message[KIND_HEADER] is None:  # for the mailer's log line
                message[KIND_HEADER] = event_type
            try:
                prepared = self._mailer.prepare(message)
            except MailRejectedError as error:
                self._refused(conn, event_id, event_type, recipient, error)
                return
            reserved = conn.execute(
                "INSERT INTO sent_emails (event_id, event_type, recipient, status) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING event_id",
                (event_id, event_type, recipient, SENDING),
            ).fetchone()
            if reserved is None:
                prepared.abandon()  # another notifier has it
                return
            try:
                prepared.deliver()
            except MailRejectedError as error:  # refused at the last step: nothing went out
                conn.execute("DELETE FROM sent_emails WHERE event_id = %s", (event_id,))
                self._refused(conn, event_id, event_type, recipient, error)
                return
            conn.execute(
                "UPDATE sent_emails SET status = %s, sent_at = now() WHERE event_id = %s",
                (SENT, event_id),
            )

    @staticmethod
    def _refused(
        conn: psycopg.Connection[Any],
        event_id: UUID,
        event_type: str,
        recipient: str,
        error: MailRejectedError,
    ) -> None:
        if not error.permanent:
            raise MailUnavailableError(str(error)) from error
        log.error("notifier: %s refused for %s: %s", event_type, recipient, error)
        conn.execute(
            "INSERT INTO sent_emails (event_id, event_type, recipient, status) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (event_id, event_type, recipient, REFUSED),
        )
