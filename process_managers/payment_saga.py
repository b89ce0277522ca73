"""The payment saga: turns a held booking into a confirmed, paid one, or undoes it.

Design: an outbox of tasks, executed at least once by idempotent steps.

- `PaymentSagaTasks` follows the log. For each booking event that may call for an action it
  arms a row of `payment_saga_tasks` (booking id, a generation counter, a due time) in the
  page's own transaction: a page's tasks are recorded exactly once, and handling a page calls
  nothing outside PostgreSQL. Calling Stripe and sending commands from inside the page instead
  would hold the follower's transaction open across network calls, stall every later booking
  behind one slow or failing payment, and still repeat those calls when the page is redone.
- `PaymentSaga` executes due tasks on a few threads (`scheduling.TaskTable`). A session advisory
  lock per booking keeps two executors (threads or processes) off the same booking; a killed
  worker's locks vanish with its connections, so a restart resumes at once. A task advances its
  booking from the booking's *current* state in the event store, not from the event that armed
  it, taking the step the booking calls for (`Booking.next_step`): create the Stripe
  intent and record it (RequestPayment), confirm it with the payment method given at booking,
  record the result (RecordPayment sells the seats and confirms; RecordPaymentFailure cancels
  and releases them), confirm a paid booking, refund the money of a cancelled or expired one
  (RecordRefund), and give back, first of all, money captured on intents that did not pay for
  the booking (PaymentMismatched: refunded on that intent for what it captured, then
  RecordMismatchRefund). Each step is idempotent (Stripe idempotency keys and look-ups;
  commands that are no-ops once their result is recorded), so redoing a task after a crash
  repeats nothing that took effect. A task row is deleted only if no event re-armed it
  meanwhile (same generation); a failed task is retried with backoff and its error kept in
  `last_error`.

When tracing, each step is a span in the trace of the booking's latest event (the context the
event log keeps beside it), so a booking's steps, and the events they make, join its trace.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from uuid import UUID

import psycopg

from commands.errors import PaymentRejectedError, UnknownPaymentMethodError
from commands.models import (
    ConfirmBooking,
    RecordMismatchRefund,
    RecordPayment,
    RecordPaymentFailure,
    RecordRefund,
    RequestPayment,
)
from commands.payments import FREE_INTENT, PaymentCommands, PaymentStep
from commands.ports import PaymentGateway, TaskStore
from domain.booking import Booking, BookingEvents, NextStep
from infra import tracing
from infra.decoding import read_traceparent
from infra.log_follower import LoggedEvent
from process_managers.scheduling import TaskTable, create_tables

log = logging.getLogger(__name__)

TASKS_DDL = """
CREATE TABLE IF NOT EXISTS payment_saga_tasks (
    booking_id uuid PRIMARY KEY,
    generation bigint NOT NULL DEFAULT 1,
    due_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX IF NOT EXISTS payment_saga_tasks_due ON payment_saga_tasks (due_at)
"""

# Booking events after which the booking's next step (Booking.next_step) may be one to take.
# Not PaymentRequested: only the saga records it, inside a task that goes on to the next step
# (and whose row stays armed until it finished), so arming again would only repeat a no-op run.
TRIGGERS = frozenset(
    {
        BookingEvents.PLACED,
        BookingEvents.PAYMENT_SUCCEEDED,
        BookingEvents.LATE_PAYMENT_RECEIVED,
        BookingEvents.CANCELLED,
        BookingEvents.EXPIRED,
        BookingEvents.PAYMENT_MISMATCHED,
        BookingEvents.MISMATCHED_PAYMENT_REFUNDED,
    }
)
WAITING_FAN_LEAD_SECONDS = 60  # how far a waiting fan's task jumps the queue of due tasks
MAX_STEPS = 6  # a booking needs at most: intent, record, confirm ... then it waits or is final


class PaymentSagaTasks:
    """PageHandler: arms one task per booking that an event of the page may move on."""

    name = "payment-saga"

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(TASKS_DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        bookings = list(
            dict.fromkeys(e.event.originator_id for e in page if e.type_name in TRIGGERS)
        )
        # A booking placed with a payment method has its fan waiting for "confirmed": its task
        # is armed as overdue, so while the saga is busy (an on-sale) it goes before the intents
        # of holds whose customers pay later (the executor takes the most overdue first).
        waiting = [
            e.event.originator_id
            for e in page
            if e.type_name == BookingEvents.PLACED and getattr(e.event, "payment_method", None)
        ]
        if bookings:
            conn.execute(
                "INSERT INTO payment_saga_tasks (booking_id, due_at) "
                "SELECT b, CASE WHEN b = ANY(%s::uuid[]) THEN now() - %s * interval '1 second' "
                "ELSE now() END FROM unnest(%s::uuid[]) AS b "
                "ON CONFLICT (booking_id) DO UPDATE SET "
                "generation = payment_saga_tasks.generation + 1, due_at = now(), attempts = 0",
                (waiting, WAITING_FAN_LEAD_SECONDS, bookings),
            )


class PaymentSaga:
    """Executes due saga tasks: Stripe calls and payment commands, idempotent step by step."""

    def __init__(
        self,
        store: TaskStore,
        payments: PaymentCommands,
        gateway: PaymentGateway,
        threads: int = 4,
        poll_interval: float = 0.05,
        command_timeout: float = 10.0,
        wake: threading.Event | None = None,
    ) -> None:
        self._store = store
        # Set when tasks may be due (the task follower armed some, a task finished): the
        # executor looks at once instead of at its next poll.
        self._wake = wake or threading.Event()
        self._tasks = TaskTable(
            store, "payment_saga_tasks", "booking_id", "payment-saga", log, generation=True
        )
        self._payments = payments
        self._gateway = gateway
        self._threads = threads
        self._poll = poll_interval
        self._timeout = command_timeout
        self._steps: dict[NextStep, Callable[[Booking], bool]] = {
            NextStep.REFUND_MISMATCHED: self._refund_mismatch,
            NextStep.REQUEST_PAYMENT: self._request_payment,
            NextStep.CHARGE: self._charge,
            NextStep.CONFIRM: self._confirm,
            NextStep.REFUND: self._refund,
            NextStep.RECONCILE: self._reconcile,
        }

    def setup(self) -> None:
        create_tables(self._store, PaymentSagaTasks())

    def run(self, stop: threading.Event) -> None:
        """Keep every thread busy with a due task: a task starts as soon as a thread is free
        and it is due (not when the slowest task of a batch ended). A quarter of the threads
        is kept for bookings whose fans wait for "confirmed" (armed as overdue: they come
        first), so the intents of holds paid later never fill every thread during an on-sale."""
        self.setup()
        reserved = self._threads // 4
        running: dict[UUID, tuple[Future[bool], bool]] = {}  # booking -> (task, fan waiting)
        with ThreadPoolExecutor(self._threads, thread_name_prefix="payment-saga") as pool:
            while not stop.is_set():
                self._wake.clear()  # before looking: a later wake-up is not lost
                for booking_id, (done, _) in [(b, r) for b, r in running.items() if r[0].done()]:
                    del running[booking_id]
                    done.result()  # a database failure ends the run: the supervisor restarts it
                free = self._threads - len(running)
                if free > 0:
                    later = sum(1 for _, waiting in running.values() if not waiting)
                    for booking_id, waiting in self._due(free + len(running)):
                        if booking_id in running or len(running) >= self._threads:
                            continue
                        if not waiting:
                            if later >= self._threads - reserved:
                                break  # the rest are not waited for either: kept threads
                            later += 1
                        task = pool.submit(self._run_task, booking_id)
                        task.add_done_callback(self._task_done)
                        running[booking_id] = (task, waiting)
                self._wake.wait(self._poll)
            for task, _ in running.values():
                task.result()

    def _due(self, limit: int) -> list[tuple[UUID, bool]]:
        """The bookings whose tasks are due, the most overdue first, each with whether its fan
        waits (armed as overdue by `PaymentSagaTasks`)."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "SELECT booking_id, due_at < now() - %s * interval '1 second' "
                "FROM payment_saga_tasks WHERE due_at <= now() ORDER BY due_at LIMIT %s",
                (WAITING_FAN_LEAD_SECONDS / 2, limit),
            ).fetchall()
        return [(row[0], bool(row[1])) for row in rows]

    def _task_done(self, task: Future[bool]) -> None:
        # A task that ran frees a thread for the next one; one that did not run (another
        # executor has the booking) must not make the loop spin: it waits for the poll.
        if task.exception() is not None or task.result():
            self._wake.set()

    def _run_task(self, booking_id: UUID) -> bool:
        def advance(_: psycopg.Connection[Any]) -> bool:
            self.advance(booking_id)
            return True

        return self._tasks.run(booking_id, advance, f"payment saga for booking {booking_id}")

    def advance(self, booking_id: UUID) -> None:
        """Take the booking as far as it can go now (idempotent: safe to repeat)."""
        for _ in range(MAX_STEPS):
            if not self._step(self._store.get(booking_id, Booking)):
                return

    def _step(self, booking: Booking) -> bool:
        """Do the booking's next step; False when there is nothing to do (yet)."""
        next_step = booking.next_step()
        step = self._steps.get(next_step)
        if step is None:
            return False
        if not tracing.tracing_on():
            return step(booking)
        with self._store.connection() as conn:
            made_it = read_traceparent(conn, booking.id, booking.version)
        attributes = {"booking_id": str(booking.id), "step": next_step.value}
        with tracing.span_in_trace_of(
            f"payment-saga {next_step.value}", made_it, attributes=attributes
        ):
            return step(booking)

    def _charge(self, booking: Booking) -> bool:
        assert booking.payment_intent_id is not None and booking.payment_method is not None
        try:
            result = self._gateway.confirm_intent(
                booking.id, booking.payment_intent_id, booking.payment_method
            )
        except UnknownPaymentMethodError as error:
            # Nothing charged and nobody to answer: the booking waits for its customer to pay
            # with another method (POST /bookings/{id}/pay) until its hold expires.
            log.warning("booking %s: %s; left for its customer to pay", booking.id, error)
            return False
        return self._changed(self._payments.apply_result(result))

    def _confirm(self, booking: Booking) -> bool:
        return self._changed(self._payments.confirm_booking(ConfirmBooking(booking_id=booking.id)))

    def _refund(self, booking: Booking) -> bool:
        """Give back the money of a booking that did not end confirmed."""
        assert booking.payment_intent_id is not None
        due = booking.paid_cents - booking.refunded_cents
        refund_id = self._gateway.refund(booking.id, booking.payment_intent_id, due)
        return self._changed(
            self._payments.record_refund(
                RecordRefund(booking_id=booking.id, refund_id=refund_id, amount_cents=due)
            )
        )

    def _refund_mismatch(self, booking: Booking) -> bool:
        """Give back money that did not pay for the booking, on the intent that took it."""
        intent, due = min(booking.mismatch_refunds_due.items())
        refund_id = self._gateway.refund(booking.id, intent, due)
        record = RecordMismatchRefund(
            booking_id=booking.id, payment_intent_id=intent, refund_id=refund_id, amount_cents=due
        )
        return self._changed(self._payments.record_mismatch_refund(record))

    def _reconcile(self, booking: Booking) -> bool:
        """A booking that ended without a recorded payment: ask Stripe whether its intent was
        paid after all (a charge whose result was lost when a worker died); such a payment is
        recorded as late, then refunded. Payments made later still arrive by webhook."""
        if booking.payment_intent_id in (None, FREE_INTENT):  # nothing was ever charged
            return False
        result = self._gateway.intent_result(booking.id, booking.payment_intent_id)
        return result.outcome == "succeeded" and self._changed(self._payments.apply_result(result))

    def _request_payment(self, booking: Booking) -> bool:
        if booking.amount_cents == 0:
            free = RecordPayment(
                booking_id=booking.id, payment_intent_id=FREE_INTENT, amount_cents=0
            )
            return self._changed(self._payments.record_payment(free))
        try:
            intent = self._gateway.create_intent(booking.id, booking.amount_cents, booking.currency)
        except PaymentRejectedError as error:  # Stripe will never take this payment
            failure = RecordPaymentFailure(booking_id=booking.id, reason=str(error)[:200])
            return self._changed(self._payments.record_payment_failure(failure))
        request = RequestPayment(booking_id=booking.id, payment_intent_id=intent)
        return self._changed(self._payments.request_payment(request))

    def _changed(self, future: Future[PaymentStep] | None) -> bool:
        return future is not None and future.result(timeout=self._timeout).changed
