"""A random but reproducible workload through the real command handlers: shows on sale, holds,
payments, confirmations, failures, expiries, cancellations, late payments and refunds.

Commands go in waves: every wave submits many commands at once, so the show writers commit
them in batches (group commit), then the wave's answers update what we know of each booking.
Used by bench/rebuild.py and by the projection tests (a read model rebuilt from this log must
equal the one built incrementally).
"""

from __future__ import annotations

import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from pydantic import SecretStr

from commands.models import (
    BookingRequest,
    CancelBooking,
    CloseSale,
    ExpireHold,
    OpenSale,
    PlaceHold,
    RecordPayment,
    RecordPaymentFailure,
    RecordRefund,
    RequestPayment,
    ScheduleShow,
)
from domain.booking import CANCELLED, CONFIRMED, EXPIRED, HELD, PAID, PAYMENT_REQUESTED
from http_shell.container import Container
from infra.settings import Settings
from ticketblitz.bootstrap import bootstrap
from ticketblitz.demo import stalls_and_floor

WORDS = [
    "jazz",
    "rock",
    "opera",
    "ballet",
    "comedy",
    "techno",
    "swing",
    "blues",
    "symphony",
    "quartet",
    "night",
    "live",
]
CATEGORIES = ["jazz", "rock", "classical", "comedy", "electronic"]
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass
class BookingState:
    booking_id: UUID
    show_id: UUID
    customer_id: UUID
    amount_cents: int
    status: str = HELD
    paid: bool = False
    refunded: bool = False


class Workload:
    def __init__(
        self,
        container: Container,
        seed: int = 7,
        rows: int = 20,
        seats_per_row: int = 25,
        general: int = 500,
        threads: int = 8,
    ) -> None:
        self.container = container
        self.rng = random.Random(seed)
        self.rows = rows
        self.seats_per_row = seats_per_row
        self.general = general
        self.shows: list[UUID] = []
        self.customers = [uuid4() for _ in range(50)]
        self.bookings: dict[UUID, BookingState] = {}
        self.position = 0
        self.rejected = 0
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="workload")

    def close(self) -> None:
        self._pool.shutdown()

    def schedule_shows(self, count: int) -> list[UUID]:
        # Shows start in the future (as they must when scheduled), within the coming year.
        starts = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0)
        starts += timedelta(days=1)
        new: list[UUID] = []
        for _ in range(count):
            n = len(self.shows)
            title = " ".join(self.rng.sample(WORDS, 3)).title()
            command = ScheduleShow(
                title=f"{title} #{n}",
                description=f"An evening of {' and '.join(self.rng.sample(WORDS, 2))}.",
                category=self.rng.choice(CATEGORIES),
                venue="Hall " + str(n % 7),
                starts_at=starts + timedelta(days=self.rng.randint(0, 365), hours=n % 5),
                currency="EUR",
                # Fifty customers share every show: the default cap (10) would refuse most
                # holds and leave the shows unsold, so the highest cap keeps the mix of steps.
                max_tickets_per_customer=1000,
                **stalls_and_floor(
                    self.rows,
                    self.seats_per_row,
                    self.general,
                    stalls_cents=self.rng.choice([2500, 4500, 6000]),
                ),
            )
            scheduled = self.container.shows.schedule_show(command)
            self._advance(scheduled.position)
            self._advance(
                self.container.shows.open_sale(OpenSale(show_id=scheduled.show_id)).result()
            )
            self.shows.append(scheduled.show_id)
            new.append(scheduled.show_id)
        return new

    def run_wave(self, size: int) -> None:
        """About `size` commands: new holds and one next step for some known bookings."""
        steps: list[Callable[[], Future[Any]]] = []
        updates: list[Callable[[Any], None]] = []
        open_bookings = [b for b in self.bookings.values() if not b.refunded]
        self.rng.shuffle(open_bookings)
        for booking in open_bookings[: size // 2]:
            chosen = self._next_step(booking)
            if chosen is not None:
                steps.append(chosen[0])
                updates.append(chosen[1])
        while len(steps) < size:
            step, update = self._hold()
            steps.append(step)
            updates.append(update)
        futures = list(self._pool.map(_submit, steps))
        for future, update in zip(futures, updates, strict=True):
            try:
                update(future.result(timeout=60))
            except Exception:  # a refused command (sold out, illegal transition): no events
                self.rejected += 1

    def run_until(self, events: int, wave: int = 2000) -> int:
        """Waves until the log holds at least `events` more events than now; the last position."""
        target = self.container.store.head_position() + events
        while self.position < target:
            self.run_wave(wave)
        return self.position

    def close_a_sale(self) -> None:
        show = self.rng.choice(self.shows)
        self._advance(self.container.shows.close_sale(CloseSale(show_id=show)).result())

    # --- commands ---

    def _hold(self) -> tuple[Callable[[], Future[Any]], Callable[[Any], None]]:
        show = self.rng.choice(self.shows)
        customer = self.rng.choice(self.customers)
        quantity = self.rng.randint(1, 4)
        section = self.rng.choice([None, "A", "GA"])
        request = BookingRequest(show_id=show, quantity=quantity, section=section)
        command = PlaceHold(request=request, customer_id=customer, booking_id=uuid4())

        def held(placed: Any) -> None:
            self._advance(placed.position)
            self.bookings[placed.booking_id] = BookingState(
                placed.booking_id, show, customer, placed.amount_cents
            )

        return lambda: self.container.bookings.place_hold(command), held

    def _next_step(
        self, b: BookingState
    ) -> tuple[Callable[[], Future[Any]], Callable[[Any], None]] | None:
        payments = self.container.payments
        roll = self.rng.random()
        intent = f"pi_{b.booking_id.hex[:16]}"
        if b.status == HELD and roll < 0.5:
            return (
                lambda: payments.request_payment(
                    RequestPayment(booking_id=b.booking_id, payment_intent_id=intent)
                ),
                self._stepped(b),
            )
        if b.status in (HELD, PAYMENT_REQUESTED):
            if roll < 0.6:
                return self._record_payment(b, intent)
            if roll < 0.7:
                return (
                    lambda: payments.record_payment_failure(
                        RecordPaymentFailure(booking_id=b.booking_id, reason="card declined")
                    ),
                    self._stepped(b),
                )
            if roll < 0.85:
                return (
                    lambda: payments.expire_hold(
                        ExpireHold(booking_id=b.booking_id, at=FAR_FUTURE)
                    ),
                    self._stepped(b),
                )
            return self._cancel(b)
        if b.status in (PAID, CONFIRMED) and roll < 0.3:
            return self._cancel(b)
        if b.status == EXPIRED and not b.paid and roll < 0.3:
            return self._record_payment(b, intent)
        if b.status in (CANCELLED, EXPIRED) and b.paid and b.amount_cents > 0:
            return (
                lambda: payments.record_refund(
                    RecordRefund(
                        booking_id=b.booking_id,
                        refund_id=f"re_{b.booking_id.hex[:16]}",
                        amount_cents=b.amount_cents,
                    )
                ),
                self._stepped(b, refunded=True),
            )
        return None

    def _record_payment(
        self, b: BookingState, intent: str
    ) -> tuple[Callable[[], Future[Any]], Callable[[Any], None]]:
        command = RecordPayment(
            booking_id=b.booking_id, payment_intent_id=intent, amount_cents=b.amount_cents
        )
        return lambda: self.container.payments.record_payment(command), self._stepped(b, paid=True)

    def _cancel(self, b: BookingState) -> tuple[Callable[[], Future[Any]], Callable[[Any], None]]:
        command = CancelBooking(booking_id=b.booking_id, actor_id=b.customer_id)

        def cancelled(position: int) -> None:
            self._advance(position)
            b.status = CANCELLED

        return lambda: self.container.bookings.cancel_booking(command), cancelled

    def _stepped(
        self, b: BookingState, paid: bool = False, refunded: bool = False
    ) -> Callable[[Any], None]:
        def update(step: Any) -> None:
            self._advance(step.position)
            if step.changed:
                b.status = step.status
                b.paid = b.paid or paid
                b.refunded = b.refunded or refunded

        return update

    def _advance(self, position: int) -> None:
        self.position = max(self.position, position)


def _submit(step: Callable[[], Future[Any]]) -> Future[Any]:
    try:
        return step()
    except Exception as error:  # refused before it was queued (e.g. not found)
        failed: Future[Any] = Future()
        failed.set_exception(error)
        return failed


@contextmanager
def generated_log(database_url: str, events: int, shows: int) -> Iterator[tuple[Container, int]]:
    """A container over `database_url` whose log holds `events` more events (`shows` shows,
    40 rows of 50 seats and 2,000 standing places each), and the log's head position."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=database_url,
            jwt_secret=SecretStr(secrets.token_urlsafe(48)),
            rate_limit_enabled=False,
        )
        container = bootstrap(settings)
        try:
            workload = Workload(container, rows=40, seats_per_row=50, general=2000)
            try:
                started = time.perf_counter()
                workload.schedule_shows(shows)
                head = workload.run_until(events)
                took = time.perf_counter() - started
                print(
                    f"generated {head:,} events in {took:.1f} s ({head / took:,.0f} events/s) "
                    f"through the command handlers ({workload.rejected:,} commands refused)"
                )
            finally:
                workload.close()
            yield container, head
        finally:
            container.close()
