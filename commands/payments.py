"""Handlers for payments: the booking saga's commands and the customer's `pay`.

Payment results reach us several times and in any order: from the provider's API responses
(our own `pay`, the saga's confirmation) and from its webhooks, each possibly repeated. So every
handler here is idempotent with respect to repeated delivery: a result that is already recorded
is a no-op (`changed=False` in the answer), never an error. Handlers touching a booking go
through its show's writer, so they serialize and group-commit with the show's holds,
cancellations and expiries; seats are sold or released in the same transaction as the
booking's own change.
"""

from __future__ import annotations

import logging
import time
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
)
from commands.futures import then
from commands.models import (
    ConfirmBooking,
    ExpireHold,
    PayBooking,
    RecordPayment,
    RecordPaymentFailure,
    RecordRefund,
    RequestPayment,
)
from commands.ports import Clock, EventStore, PaymentGateway, PaymentResult
from commands.show_writer import ShowBatch, ShowWriters
from domain.booking import CONFIRMED, HELD, PAID, PAYMENT_REQUESTED, REFUNDED, Booking
from domain.errors import IllegalTransitionError

log = logging.getLogger(__name__)

# A booking is waiting for its money in these statuses.
AWAITING_PAYMENT = frozenset({HELD, PAYMENT_REQUESTED})
# The money of a booking in these statuses is accounted for: another payment is not recorded.
SETTLED = frozenset({PAID, CONFIRMED, REFUNDED})
FREE_INTENT = "free"  # the "intent" of a booking that costs nothing


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
    batch.inventory.sell(booking.id)
    booking.confirm()


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
        """PaymentSucceeded, then the seats sold and the booking confirmed, in one transaction.
        On a booking already cancelled or expired the money is kept as a late payment (the saga
        refunds it); it never confirms a booking whose seats were released."""

        def decide(batch: ShowBatch, booking: Booking) -> bool:
            intent = command.payment_intent_id
            recorded = booking.payment_intent_id == intent
            if booking.status in SETTLED or (recorded and booking.paid_cents > 0):
                if not recorded:  # cannot happen while only the recorded intent is confirmed
                    log.error(
                        "booking %s is %s: payment %s ignored", booking.id, booking.status, intent
                    )
                return False  # this payment is recorded already
            booking.record_payment(intent, command.amount_cents)
            claim = batch.inventory.claim_of(booking.id)
            if booking.status == PAID and claim is not None and not claim["sold"]:
                sell_and_confirm(batch, booking)
            return True

        return self._submit(command.booking_id, decide)

    def record_payment_failure(self, command: RecordPaymentFailure) -> Future[PaymentStep]:
        """A declined payment cancels the booking and releases its seats (compensation)."""

        def decide(batch: ShowBatch, booking: Booking) -> bool:
            intent = command.payment_intent_id
            stale = intent is not None and booking.payment_intent_id not in (None, intent)
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

    def apply_result(self, result: PaymentResult) -> Future[PaymentStep] | None:
        """Record what the provider said (API response or webhook); None while it is pending."""
        if result.outcome == "succeeded":
            return self.record_payment(
                RecordPayment(
                    booking_id=result.booking_id,
                    payment_intent_id=result.intent_id,
                    amount_cents=result.amount_cents,
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
        """A verified provider notification: record its result (unknown bookings are ignored)."""
        result = self._gateway.parse_webhook(payload, signature)
        if result is None:
            return None
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
        return step

    def _payable(self, command: PayBooking) -> Booking:
        """The booking, once the saga has created its payment intent (waits a bounded time)."""
        deadline = time.monotonic() + self._intent_wait
        while True:
            booking = self._store.get(command.booking_id, Booking)
            if not command.actor_is_admin and booking.customer_id != command.actor_id:
                raise ForbiddenError("only the booking's customer or an admin may pay for it")
            if booking.status == PAYMENT_REQUESTED:
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
