"""Handlers for payments: the booking saga's commands and the customer's `pay`.

Payment results reach us several times and in any order: from the provider's API responses
(our own `pay`, the saga's confirmation) and from its webhooks, each possibly repeated. So every
handler here is idempotent with respect to repeated delivery: a result that is already recorded
is a no-op (`changed=False` in the answer), never an error. Handlers touching a booking go
through its show's writer, so they serialize and group-commit with the show's holds,
cancellations and expiries; seats are sold or released in the same transaction as the
booking's own change.

Money is believed only when it matches. A result is only ever the provider's API answer (a
webhook merely names the intent to read), and it pays for a booking only when it is the intent
recorded for the booking, naming the booking, for its exact amount and currency
(`Booking.payment_mismatch`). Anything else that reports money is recorded on the booking as
`PaymentMismatched`, never confirms it, and the saga refunds what was captured. A payment for a
booking whose show was cancelled or has started is recorded as late (the booking is cancelled
and its seats released) and refunded, never confirmed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from commands.errors import (
    ForbiddenError,
    NotFoundError,
    PaymentDeclinedError,
    PaymentNotReadyError,
    PaymentRefundedError,
)
from commands.futures import then
from commands.models import (
    ConfirmBooking,
    ExpireHold,
    PayBooking,
    RecordMismatchRefund,
    RecordPayment,
    RecordPaymentFailure,
    RecordRefund,
    RequestPayment,
)
from commands.ports import Clock, EventStore, PaymentGateway, PaymentResult
from commands.show_writer import ShowBatch, ShowWriters
from commands.tickets import issue_tickets
from domain.booking import (
    CONFIRMED,
    HELD,
    MISMATCH_REASONS,
    PAID,
    PAYMENT_REQUESTED,
    REFUNDED,
    Booking,
)
from domain.errors import IllegalTransitionError
from domain.show import CANCELLED as SHOW_IS_CANCELLED
from domain.show import Show

log = logging.getLogger(__name__)

# A booking is waiting for its money in these statuses.
AWAITING_PAYMENT = frozenset({HELD, PAYMENT_REQUESTED})
# The money of a booking in these statuses is accounted for: another payment is not recorded.
SETTLED = frozenset({PAID, CONFIRMED, REFUNDED})
FREE_INTENT = "free"  # the "intent" of a booking that costs nothing
# Why a booking awaiting its money is cancelled when the money comes too late (the first is the
# reason the show's cancellation gives its bookings: process_managers/show_cancellation.py).
SHOW_CANCELLED = "show cancelled"
SHOW_STARTED = "show started"
PAYMENT_MISMATCHED = "payment did not match the booking"


@dataclass(frozen=True)
class PaymentStep:
    """The answer of a payment command: the booking's status after it, and whether it changed."""

    booking_id: UUID
    status: str
    changed: bool
    position: int


BookingDecision = Callable[[ShowBatch, Booking], bool]


def release_seats(batch: ShowBatch, booking_id: UUID, reason: str, at: datetime) -> None:
    if batch.inventory.claim_of(booking_id) is not None:
        batch.inventory.release(booking_id, reason, at)


def sell_and_confirm(batch: ShowBatch, booking: Booking) -> None:
    """Sell the seats, confirm the booking and issue its tickets, in one transaction."""
    batch.inventory.sell(booking.id)
    booking.confirm()
    issue_tickets(batch, booking)


def too_late_for(show: Show, at: datetime) -> str | None:
    """Why no booking of the show may be confirmed any more, or None while it still may."""
    if show.status == SHOW_IS_CANCELLED:
        return SHOW_CANCELLED
    if at >= show.starts_at:
        return SHOW_STARTED
    return None


def cancel_for(batch: ShowBatch, booking: Booking, reason: str, at: datetime) -> None:
    booking.cancel(reason)
    release_seats(batch, booking.id, reason, at)


class PaymentCommands:
    def __init__(
        self,
        store: EventStore,
        writers: ShowWriters,
        gateway: PaymentGateway,
        clock: Clock,
        intent_wait_seconds: float = 5.0,
        command_timeout_seconds: float = 10.0,
    ) -> None:
        self._store = store
        self._writers = writers
        self._gateway = gateway
        self._clock = clock
        self._intent_wait = intent_wait_seconds
        self._timeout = command_timeout_seconds
        self._mismatches: Counter[str] = Counter({reason: 0 for reason in MISMATCH_REASONS})
        self._mismatches_lock = threading.Lock()

    def mismatch_counts(self) -> dict[str, int]:
        """Mismatched payments this process recorded, by reason (for the metric)."""
        with self._mismatches_lock:
            return dict(self._mismatches)

    # --- the saga's commands ---

    def request_payment(self, command: RequestPayment) -> Future[PaymentStep]:
        """Record the booking's payment intent; the first one recorded stays."""

        def decide(_: ShowBatch, booking: Booking) -> bool:
            if booking.payment_intent_id is not None or booking.status != HELD:
                return False
            booking.request_payment(command.payment_intent_id)
            return True

        return self._submit(command.booking_id, decide)

    def record_payment(self, command: RecordPayment) -> Future[PaymentStep]:
        """A payment reported by the provider's API. If it matches the booking: PaymentSucceeded,
        then the seats sold and the booking confirmed, in one transaction. If it does not:
        PaymentMismatched (refunded by the saga). On a booking already cancelled or expired, or
        of a show cancelled or started, the money is kept as a late payment (the saga refunds
        it); it never confirms a booking whose seats were or must be released."""
        mismatch: list[str] = []  # the reason the committed decision found, if any

        def decide(batch: ShowBatch, booking: Booking) -> bool:
            mismatch.clear()
            intent = command.payment_intent_id
            if intent in booking.mismatched_payments:
                return False  # recorded already
            free = intent == FREE_INTENT and booking.amount_cents == command.amount_cents == 0
            reason = None
            if not free:
                reason = booking.payment_mismatch(
                    intent, command.amount_cents, command.currency, command.named_booking_id
                )
            if reason is not None:
                mismatch.append(reason)
                self._record_mismatch(batch, booking, command, reason)
                return True
            if booking.status in SETTLED or booking.paid_cents > 0:
                return False  # this payment is recorded already
            now = self._clock()
            late = too_late_for(batch.show(), now)
            if late is not None and booking.status in AWAITING_PAYMENT:
                cancel_for(batch, booking, late, now)
            booking.record_payment(intent, command.amount_cents)
            claim = batch.inventory.claim_of(booking.id)
            if booking.status == PAID and claim is not None and not claim.sold:
                sell_and_confirm(batch, booking)
            return True

        def counted(step: PaymentStep) -> PaymentStep:
            if step.changed and mismatch:
                log.warning(
                    "booking %s: payment %s of %s %s does not match it (%s): to be refunded",
                    step.booking_id,
                    command.payment_intent_id,
                    command.amount_cents,
                    command.currency,
                    mismatch[0],
                )
                with self._mismatches_lock:
                    self._mismatches[mismatch[0]] += 1
            return step

        return then(self._submit(command.booking_id, decide), counted)

    def _record_mismatch(
        self, batch: ShowBatch, booking: Booking, command: RecordPayment, reason: str
    ) -> None:
        intent = command.payment_intent_id
        currency = (command.currency or "").lower()
        booking.record_mismatched_payment(intent, command.amount_cents, currency, reason)
        if intent == booking.payment_intent_id and booking.status in AWAITING_PAYMENT:
            # The booking's own intent was spent on a wrong payment: it cannot be paid any more.
            cancel_for(batch, booking, PAYMENT_MISMATCHED, self._clock())

    def record_payment_failure(self, command: RecordPaymentFailure) -> Future[PaymentStep]:
        """A declined payment cancels the booking and releases its seats (compensation); only a
        failure of the intent recorded for the booking does (or, before any intent exists, the
        saga's own failure to create one)."""

        def decide(batch: ShowBatch, booking: Booking) -> bool:
            intent = command.payment_intent_id
            stale = intent is not None and intent != booking.payment_intent_id
            if booking.status not in AWAITING_PAYMENT or stale:
                return False
            booking.record_payment_failure(command.reason)
            release_seats(batch, booking.id, command.reason, self._clock())
            return True

        return self._submit(command.booking_id, decide)

    def confirm_booking(self, command: ConfirmBooking) -> Future[PaymentStep]:
        """Sell the seats of a paid booking and confirm it, in one transaction."""

        def decide(batch: ShowBatch, booking: Booking) -> bool:
            if booking.status != PAID:
                return False
            now = self._clock()
            late = too_late_for(batch.show(), now)
            if late is not None:  # paid, but too late: cancelled, so the saga refunds it
                cancel_for(batch, booking, late, now)
            else:
                sell_and_confirm(batch, booking)
            return True

        return self._submit(command.booking_id, decide)

    def expire_hold(self, command: ExpireHold) -> Future[PaymentStep]:
        """Release an unpaid hold after its expiry (a no-op once it is paid or over)."""

        def decide(batch: ShowBatch, booking: Booking) -> bool:
            if booking.status not in AWAITING_PAYMENT or command.at < booking.hold_expires_at:
                return False
            booking.expire(command.at)
            release_seats(batch, booking.id, "hold expired", command.at)
            return True

        return self._submit(command.booking_id, decide)

    def record_refund(self, command: RecordRefund) -> Future[PaymentStep]:
        def decide(_: ShowBatch, booking: Booking) -> bool:
            if booking.refund_id == command.refund_id or not booking.refund_due:
                return False
            booking.refund(command.refund_id, command.amount_cents)
            return True

        return self._submit(command.booking_id, decide)

    def record_mismatch_refund(self, command: RecordMismatchRefund) -> Future[PaymentStep]:
        def decide(_: ShowBatch, booking: Booking) -> bool:
            due = booking.mismatch_refunds_due.get(command.payment_intent_id)
            if due != command.amount_cents:
                return False  # given back already (or never due)
            booking.refund_mismatched_payment(
                command.payment_intent_id, command.refund_id, command.amount_cents
            )
            return True

        return self._submit(command.booking_id, decide)

    def apply_result(self, result: PaymentResult) -> Future[PaymentStep] | None:
        """Record what the provider said (API response or webhook); None while it is pending."""
        if result.outcome == "succeeded":
            return self.record_payment(
                RecordPayment(
                    booking_id=result.booking_id,
                    payment_intent_id=result.intent_id,
                    amount_cents=result.amount_cents,
                    currency=result.currency,
                    named_booking_id=result.named_booking_id,
                )
            )
        if result.outcome == "failed":
            return self.record_payment_failure(
                RecordPaymentFailure(
                    booking_id=result.booking_id,
                    payment_intent_id=result.intent_id,
                    reason=(result.reason or "payment failed")[:200],
                )
            )
        return None

    def accept_webhook(self, payload: bytes, signature: str | None) -> PaymentStep | None:
        """A verified provider notification. Its body is not believed: the intent it names is
        read from the provider's API, and that answer is recorded on the booking the intent
        names there (unknown intents and bookings are ignored)."""
        notice = self._gateway.parse_webhook(payload, signature)
        if notice is None:
            return None
        result = self._gateway.read_intent(notice.intent_id)
        if result is None:
            log.warning("webhook for an intent Stripe does not know, or not ours, ignored")
            return None
        if result.booking_id != notice.booking_id or result.outcome != notice.outcome:
            log.warning(
                "webhook about intent %s says %s for booking %s; Stripe says %s for %s",
                notice.intent_id,
                notice.outcome,
                notice.booking_id,
                result.outcome,
                result.booking_id,
            )
        try:
            future = self.apply_result(result)
        except NotFoundError:
            log.warning("webhook for unknown booking %s ignored", result.booking_id)
            return None
        return None if future is None else future.result(timeout=self._timeout)

    # --- the customer's payment ---

    def pay(self, command: PayBooking) -> PaymentStep:
        """Charge the booking's payment intent with the customer's payment method (blocking).
        A decline cancels the booking and raises PaymentDeclinedError."""
        booking = self._payable(command)
        assert booking.payment_intent_id is not None
        result = self._gateway.confirm_intent(
            booking.id, booking.payment_intent_id, command.payment_method
        )
        future = self.apply_result(result)
        if future is None:  # e.g. the card needs authentication: the webhook will tell
            position = self._store.head_position()
            return PaymentStep(booking.id, booking.status, False, position)
        step = future.result(timeout=self._timeout)
        if result.outcome == "failed":
            raise PaymentDeclinedError(booking.id, result.reason or "payment failed")
        if result.outcome == "succeeded" and step.status != CONFIRMED:
            # Charged, but overtaken (the show was cancelled or started meanwhile): the saga
            # refunds it; the customer must not read a 200 as a confirmation.
            ended = self._store.get(booking.id, Booking)
            raise PaymentRefundedError(booking.id, ended.status, ended.reason)
        return step

    def _payable(self, command: PayBooking) -> Booking:
        """The booking, once the saga has created its payment intent (waits a bounded time)."""
        deadline = time.monotonic() + self._intent_wait
        while True:
            booking = self._store.get(command.booking_id, Booking)
            if not command.actor_is_admin and booking.customer_id != command.actor_id:
                raise ForbiddenError("only the booking's customer or an admin may pay for it")
            if booking.status == PAYMENT_REQUESTED:
                # Charge nothing that could only be refunded: the booking cannot be confirmed.
                late = too_late_for(self._store.get(booking.show_id, Show), self._clock())
                if late is not None:
                    raise IllegalTransitionError(booking.id, booking.status, f"pay ({late})")
                return booking
            if booking.status != HELD:
                raise IllegalTransitionError(booking.id, booking.status, "pay")
            if time.monotonic() >= deadline:
                raise PaymentNotReadyError(f"booking {booking.id} is not ready for payment yet")
            time.sleep(0.05)  # the saga creates the intent right after the hold

    # --- plumbing ---

    def _submit(self, booking_id: UUID, decide: BookingDecision) -> Future[PaymentStep]:
        show_id = self._store.get(booking_id, Booking).show_id

        def run(batch: ShowBatch) -> tuple[bool, str]:
            booking = batch.booking(booking_id)
            changed = decide(batch, booking)
            return changed, booking.status

        def answer(done: tuple[tuple[bool, str], int]) -> PaymentStep:
            (changed, status), position = done
            return PaymentStep(booking_id, status, changed, position)

        return then(self._writers.for_show(show_id).submit(run), answer)
