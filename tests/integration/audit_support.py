"""Helpers for the audit tests: a database holding one known history (shows, holds, payments,
expiries, cancellations, refunds, a late payment and a gap left by a refused append), sealed,
with the read models caught up; and copies of it to tamper with."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from typer.testing import CliRunner

from audit.hash_chain import Root, seal
from bench.common import new_database as new_database
from commands.errors import VersionConflictError
from commands.models import (
    BookingRequest,
    CancelBooking,
    ExpireHold,
    OpenSale,
    PlaceHold,
    RecordPayment,
    RecordPaymentFailure,
    RecordRefund,
    RequestPayment,
    ScheduleShow,
)
from domain.booking import Booking
from domain.ids import inventory_id_for
from http_shell.container import Container
from tests.integration.projection_support import container_on as container_on
from ticketblitz.cli import app as cli_app
from ticketblitz.demo import stalls_and_floor

CLI = str(Path(sys.executable).parent / "ticketblitz")
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
GA_CAPACITY = 5


@dataclass
class History:
    database_url: str
    show_id: UUID
    inventory_id: UUID
    bookings: dict[str, UUID] = field(default_factory=dict)
    customers: dict[str, UUID] = field(default_factory=dict)
    head: int = 0
    gap: int = 0  # a notification id a refused append used up: no row, legitimately
    root: Root | None = None


def schedule_show(container: Container) -> UUID:
    scheduled = container.shows.schedule_show(
        ScheduleShow(
            title="Audit Night",
            category="jazz",
            venue="Blue Hall",
            starts_at=datetime.now(UTC).replace(microsecond=0) + timedelta(days=365),
            currency="EUR",
            **stalls_and_floor(rows=5, seats_per_row=4, floor=GA_CAPACITY),
        )
    )
    container.shows.open_sale(OpenSale(show_id=scheduled.show_id)).result(timeout=10)
    return scheduled.show_id


def build_history(container: Container, database_url: str) -> History:
    """Each booking's story, through the real command handlers."""
    show_id = schedule_show(container)
    history = History(database_url, show_id, inventory_id_for(show_id))
    payments = container.payments

    def hold(name: str, **request: Any) -> UUID:
        customer, booking = uuid4(), uuid4()
        placed = container.bookings.place_hold(
            PlaceHold(
                request=BookingRequest(show_id=show_id, **request),
                customer_id=customer,
                booking_id=booking,
            )
        ).result(timeout=10)
        history.bookings[name] = booking
        history.customers[name] = customer
        return placed.booking_id

    def request(name: str) -> str:
        """The booking's own intent, recorded (a no-op once the booking has one, or ended)."""
        booking = history.bookings[name]
        intent = f"pi_{booking.hex[:12]}"
        payments.request_payment(RequestPayment(booking_id=booking, payment_intent_id=intent))
        return intent

    def pay(name: str) -> None:
        booking = history.bookings[name]
        intent = request(name)
        amount = container.store.get(booking, Booking).amount_cents
        payments.record_payment(
            RecordPayment(booking_id=booking, payment_intent_id=intent, amount_cents=amount)
        ).result(timeout=10)

    def refund(name: str) -> None:
        booking = container.store.get(history.bookings[name], Booking)
        payments.record_refund(
            RecordRefund(
                booking_id=booking.id,
                refund_id=f"re_{booking.id.hex[:12]}",
                amount_cents=booking.paid_cents - booking.refunded_cents,
            )
        ).result(timeout=10)

    def expire(name: str) -> None:
        payments.expire_hold(ExpireHold(booking_id=history.bookings[name], at=FAR_FUTURE)).result(
            timeout=10
        )

    hold("confirmed", seats=["A-1-1", "A-1-2"])
    pay("confirmed")  # paid, seats sold, confirmed
    hold("general", section="GA", quantity=3)
    pay("general")
    hold("expired", seats=["A-2-1"])
    expire("expired")
    hold("refunded", seats=["A-3-1"])
    pay("refunded")
    container.bookings.cancel_booking(
        CancelBooking(
            booking_id=history.bookings["refunded"], actor_id=history.customers["refunded"]
        )
    ).result(timeout=10)
    refund("refunded")
    hold("late", seats=["A-4-1"])
    request("late")
    expire("late")
    pay("late")  # its own intent, after the expiry: kept as a late payment, then given back
    refund("late")
    hold("declined", seats=["A-5-1"])
    refused_append(container, history.bookings["declined"])
    payments.record_payment_failure(
        RecordPaymentFailure(booking_id=history.bookings["declined"], reason="card declined")
    ).result(timeout=10)
    history.head = container.store.head_position()
    with container.store.connection() as conn:
        ids = {r[0] for r in conn.execute("SELECT notification_id FROM ticketblitz_events")}
    unused = sorted(set(range(1, history.head + 1)) - ids)
    assert len(unused) == 1, f"expected the refused append's id unused, found {unused}"
    history.gap = unused[0]
    return history


def refused_append(container: Container, booking_id: UUID) -> None:
    """Two writers change the same booking; the stale one is refused by the store's unique
    (stream, version) key, and the notification id its insert drew stays unused."""
    stale = container.store.get(booking_id, Booking)
    fresh = container.store.get(booking_id, Booking)
    fresh.request_payment("pi_first")
    container.store.save(fresh)
    stale.request_payment("pi_second")
    try:
        container.store.save(stale)
    except VersionConflictError:
        pass
    else:
        raise AssertionError("the stale append was accepted")


def sealed_history(container: Container, database_url: str) -> History:
    history = build_history(container, database_url)
    read_side = container.read_side
    assert read_side is not None
    runners = read_side.start_runners()
    assert runners.wait_for(history.head, timeout=30), "the read models did not catch up"
    history.root = seal(container.store)
    assert history.root.position == history.head
    return history


def position_of(database_url: str, stream_id: UUID, event_type: str) -> int:
    """The position of the stream's (first) event of that type, e.g. "PaymentSucceeded"."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT notification_id FROM ticketblitz_events WHERE originator_id = %s "
            "AND topic LIKE %s ORDER BY notification_id LIMIT 1",
            (stream_id, f"%.{event_type}"),
        ).fetchone()
    assert row is not None, f"no {event_type} in {stream_id}"
    return int(row[0])


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(database_url: str, *args: str) -> CliResult:
    """`ticketblitz audit ...` in this process (the real CLI, without a second start-up)."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TICKETBLITZ_")}
    env["TICKETBLITZ_DATABASE_URL"] = database_url
    result = CliRunner().invoke(cli_app, ["audit", *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def run_cli_process(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`ticketblitz audit ...` as an operator runs it: its own process, exit status and all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETBLITZ_")}
    env["TICKETBLITZ_DATABASE_URL"] = database_url
    return subprocess.run(
        [CLI, "audit", *args], env=env, capture_output=True, text=True, timeout=120
    )
