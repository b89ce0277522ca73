"""Hold expiry: a hold that is not paid by its expiry is released.

`HoldDeadlines` follows the log and keeps the table of due deadlines in the page's transaction:
a placed booking adds its hold's expiry, a booking that is paid, confirmed, cancelled or
expired removes it. `HoldExpiry` issues ExpireHold for the deadlines that are due; the command
is a no-op for a booking that was paid meanwhile, so racing a payment is harmless (the payment
that loses the race is a late payment, which the payment saga refunds).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from commands.models import ExpireHold
from commands.payments import PaymentCommands, PaymentStep
from commands.ports import Clock, Connections
from domain.booking import BookingEvents
from infra.log_follower import LoggedEvent
from process_managers.scheduling import (
    create_tables,
    keep_bookings,
    log_failure,
    retry_delay,
    run_until_stopped,
)

log = logging.getLogger(__name__)

DEADLINES_DDL = """
CREATE TABLE IF NOT EXISTS hold_deadlines (
    booking_id uuid PRIMARY KEY,
    due_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS hold_deadlines_due ON hold_deadlines (due_at)
"""

# After these a hold can no longer expire.
SETTLING = frozenset(
    {
        BookingEvents.PAYMENT_SUCCEEDED,
        BookingEvents.PAYMENT_FAILED,
        BookingEvents.CONFIRMED,
        BookingEvents.CANCELLED,
        BookingEvents.EXPIRED,
    }
)


class HoldDeadlines:
    """PageHandler: the due-deadlines table, fed from the log."""

    name = "hold-expiry"

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(DEADLINES_DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        due: dict[UUID, datetime | None] = {}  # booking -> its hold's expiry, None: settled
        for logged in page:
            booking_id = logged.event.originator_id
            if logged.type_name == BookingEvents.PLACED:
                due[booking_id] = logged.event.hold_expires_at
            elif logged.type_name in SETTLING:
                due[booking_id] = None
        keep_bookings(conn, "hold_deadlines", "due_at", "timestamptz", due)


class HoldExpiry:
    """Issues ExpireHold for due deadlines (several workers may run it: the command is
    idempotent, the worst case is a no-op)."""

    def __init__(
        self,
        store: Connections,
        payments: PaymentCommands,
        clock: Clock,
        poll_interval: float = 0.05,
        command_timeout: float = 10.0,
        batch: int = 500,
    ) -> None:
        self._store = store
        self._payments = payments
        self._clock = clock
        self._poll = poll_interval
        self._timeout = command_timeout
        self._batch = batch

    def setup(self) -> None:
        create_tables(self._store, HoldDeadlines())

    def run(self, stop: threading.Event) -> None:
        self.setup()
        run_until_stopped(stop, self.expire_due, self._poll)

    def expire_due(self) -> int:
        """Expire the holds due now; returns how many deadlines were settled."""
        now = self._clock()
        with self._store.connection() as conn:
            due = conn.execute(
                "SELECT booking_id, attempts FROM hold_deadlines WHERE due_at <= %s "
                "ORDER BY due_at LIMIT %s",
                (now, self._batch),
            ).fetchall()
            # Submit them all before waiting: the show writers commit them in batches.
            pending = [(b, a, self._submit(ExpireHold(booking_id=b, at=now))) for b, a in due]
            settled = []
            for booking_id, attempts, future in pending:
                try:
                    future.result(timeout=self._timeout)
                except Exception as error:  # this one waits; the others go on
                    delay = retry_delay(attempts)
                    log_failure(log, f"expiring the hold of booking {booking_id}", error, delay)
                    conn.execute(
                        "UPDATE hold_deadlines SET attempts = attempts + 1, "
                        "due_at = %s + make_interval(secs => %s) WHERE booking_id = %s",
                        (now, delay, booking_id),
                    )
                else:
                    settled.append(booking_id)
            if settled:
                conn.execute("DELETE FROM hold_deadlines WHERE booking_id = ANY(%s)", (settled,))
        return len(settled)

    def _submit(self, command: ExpireHold) -> Future[PaymentStep]:
        """The command's future; a failure to even submit it is carried by the future too."""
        try:
            return self._payments.expire_hold(command)
        except Exception as error:
            failed: Future[PaymentStep] = Future()
            failed.set_exception(error)
            return failed
