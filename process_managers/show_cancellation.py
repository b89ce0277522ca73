"""Show cancellation: when a show is cancelled, every booking of it that is not over yet is
cancelled and its seats freed; the paid ones are then refunded in full by the payment saga.

Design: the same outbox of tasks as the payment saga, fed from the log, never from a read model
(which may lag behind the cancellation and miss the last bookings).

- `ShowCancellationTasks` follows the log. In each page's transaction it keeps `show_bookings`
  (show id, booking id) of the bookings that may still need undoing: a `Booking.Placed` adds its
  row, a cancellation, decline or expiry removes it (such a booking is over: nothing to undo).
  A `Show.Cancelled` arms a row of `show_cancellation_tasks`. Every hold of a show is decided by
  the show's writer under the show's lock, and a cancelled show's sale is closed in the same
  transaction as its cancellation, so every booking of the show was placed before
  `Show.Cancelled` in the log: once the task is visible, so are all of its show's bookings.
  (Rows of confirmed bookings stay while their show is not cancelled: one small row per sale.
  A new deployment's follower starts at the log's beginning, so shows cancelled before this
  process manager existed get their bookings cancelled and refunded too.)
- `ShowCancellation` executes due tasks (`scheduling.TaskTable`). A session advisory lock per
  show keeps two executors (threads or processes) off the same show; a killed worker's lock
  vanishes with its connection. A task takes its show's rows in batches of `batch` bookings and
  sends each batch as one command (CancelShowBookings) through the show's writer: the bookings
  it finds held, awaiting payment, paid or confirmed are cancelled with the reason
  `SHOW_CANCELLED` and their seats released, in one transaction; others are left alone, so a
  batch redone after a crash changes nothing. Only after the command committed does the task
  record its progress (the last booking id done, in booking id order); it is deleted when no
  booking is left after that. The executor never deletes rows of `show_bookings` (the follower
  does, as the cancellations reach the log): two deleters of the same rows could deadlock. A
  failed task is retried with backoff, its error kept in `last_error`.
- The money: a cancelled booking with money on it is `refund_due`, which the payment saga
  refunds once, with a Stripe idempotency key per booking. A payment that lands after the
  cancellation is recorded as late and refunded the same way.
- The customer hears of it once per booking: the notifier sends one "show cancelled" e-mail for
  the booking's cancellation, which announces the refund; the refund of that money sends no
  second e-mail (`process_managers/notifier.py`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg

from commands.models import CancelShowBookings
from commands.payments import SHOW_CANCELLED as SHOW_CANCELLED
from domain.booking import BookingEvents, event_name
from domain.show import Show
from infra.log_follower import LoggedEvent, PageHandler
from process_managers.scheduling import (
    BatchExecutor,
    keep_bookings,
)

log = logging.getLogger(__name__)

# SHOW_CANCELLED is the reason recorded on a booking cancelled because its show was cancelled,
# here or by a payment that came too late (commands/payments.py); the integration events and
# the notifier recognise such a booking by it (no customer can give a reason).

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS show_bookings (
    show_id uuid NOT NULL,
    booking_id uuid NOT NULL,
    PRIMARY KEY (show_id, booking_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS show_bookings_booking ON show_bookings (booking_id);
CREATE TABLE IF NOT EXISTS show_cancellation_tasks (
    show_id uuid PRIMARY KEY,
    done_through uuid,
    due_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX IF NOT EXISTS show_cancellation_tasks_due ON show_cancellation_tasks (due_at)
"""

# After these a booking is over: a show's cancellation has nothing left to undo in it (money
# that still arrives is refunded by the payment saga).
OVER = frozenset({BookingEvents.CANCELLED, BookingEvents.PAYMENT_FAILED, BookingEvents.EXPIRED})
SHOW_CANCELLED_EVENT = event_name(Show, "Cancelled")


class ShowCancellationTasks:
    """PageHandler: the bookings of each show that are not over, and a task per cancelled show."""

    name = "show-cancellation"

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(TABLES_DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        live: dict[UUID, UUID | None] = {}  # booking -> its show while not over, else None
        cancelled: list[UUID] = []
        for logged in page:
            name = logged.type_name
            if name == BookingEvents.PLACED:
                live[logged.event.originator_id] = logged.event.show_id
            elif name in OVER:
                live[logged.event.originator_id] = None
            elif name == SHOW_CANCELLED_EVENT:
                cancelled.append(logged.event.originator_id)
        keep_bookings(conn, "show_bookings", "show_id", "uuid", live)
        if cancelled:
            conn.execute(
                "INSERT INTO show_cancellation_tasks (show_id) SELECT unnest(%s::uuid[]) "
                "ON CONFLICT (show_id) DO UPDATE SET due_at = now(), attempts = 0",
                (cancelled,),
            )


class ShowCancellation(BatchExecutor):
    """Executes due show-cancellation tasks: cancels the show's bookings batch by batch."""

    task_table = "show_cancellation_tasks"
    task_key = "show_id"
    lock_kind = "show-cancellation"

    def tables(self) -> PageHandler:
        return ShowCancellationTasks()

    def work(self, conn: psycopg.Connection[Any], item: UUID, stop: threading.Event | None) -> bool:
        return self.cancel_bookings(conn, item, stop)

    def describe(self, item: UUID) -> str:
        return f"cancelling the bookings of show {item}"

    def cancel_bookings(
        self, conn: psycopg.Connection[Any], show_id: UUID, stop: threading.Event | None = None
    ) -> bool:
        """Cancel the show's remaining bookings batch by batch (idempotent: safe to repeat);
        True once none is left, False if asked to stop first."""
        cancelled = 0
        while stop is None or not stop.is_set():
            rows = conn.execute(
                "SELECT b.booking_id FROM show_bookings b JOIN show_cancellation_tasks t "
                "USING (show_id) WHERE b.show_id = %s "
                "AND (t.done_through IS NULL OR b.booking_id > t.done_through) "
                "ORDER BY b.booking_id LIMIT %s",
                (show_id, self._batch),
            ).fetchall()
            if not rows:
                log.info("show %s cancelled: %d bookings cancelled", show_id, cancelled)
                return True
            booking_ids = [r[0] for r in rows]
            command = CancelShowBookings(
                show_id=show_id, booking_ids=booking_ids, reason=SHOW_CANCELLED
            )
            cancelled += self._bookings.cancel_for_show(command).result(timeout=self._timeout)
            # Only once they are cancelled: a crash before this line redoes a no-op batch.
            conn.execute(
                "UPDATE show_cancellation_tasks SET done_through = %s WHERE show_id = %s",
                (booking_ids[-1], show_id),
            )
        return False
