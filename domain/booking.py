"""Booking: one customer's order for one show, from hold to confirmation or its undoing.

held -> payment_requested -> paid -> confirmed, or cancelled / expired, and refunded once money
that was taken has been given back. Every transition not in LEGAL is refused. What moves a
booking on without its customer (asking for the money, charging, confirming, giving money back)
is `Booking.next_step`, which the payment saga executes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import IllegalTransitionError

HELD = "held"
PAYMENT_REQUESTED = "payment_requested"
PAID = "paid"
CONFIRMED = "confirmed"
CANCELLED = "cancelled"
EXPIRED = "expired"
REFUNDED = "refunded"

FINAL = frozenset({CONFIRMED, CANCELLED, EXPIRED, REFUNDED})

# action -> statuses it may start from
LEGAL: dict[str, frozenset[str]] = {
    "request payment": frozenset({HELD, PAYMENT_REQUESTED}),
    "record payment": frozenset({HELD, PAYMENT_REQUESTED}),
    "record late payment": frozenset({CANCELLED, EXPIRED}),
    "record payment failure": frozenset({HELD, PAYMENT_REQUESTED}),
    "confirm": frozenset({PAID}),
    "cancel": frozenset({HELD, PAYMENT_REQUESTED, PAID, CONFIRMED}),
    "expire": frozenset({HELD, PAYMENT_REQUESTED}),
    "refund": frozenset({CANCELLED, EXPIRED}),
    # Its customer holds tickets: told of the show's new date.
    "announce reschedule": frozenset({PAID, CONFIRMED}),
    # Nothing paid yet: released when its customer's account is deactivated.
    "cancel unpaid": frozenset({HELD, PAYMENT_REQUESTED}),
}

# Why money reported for a booking does not pay for it (PaymentMismatched.reason): only the
# intent recorded for the booking, naming it, for its exact amount and currency, pays for it.
OTHER_INTENT = "other-intent"
OTHER_BOOKING = "other-booking"
WRONG_AMOUNT = "wrong-amount"
WRONG_CURRENCY = "wrong-currency"
MISMATCH_REASONS = (OTHER_INTENT, OTHER_BOOKING, WRONG_AMOUNT, WRONG_CURRENCY)


class NextStep(StrEnum):
    """What a booking needs next from outside (the payment provider, the payment commands)."""

    REFUND_MISMATCHED = "refund mismatched payment"  # money that did not pay for it, first
    REQUEST_PAYMENT = "request payment"  # create the provider's intent (or pay a free one)
    CHARGE = "charge"  # charge the intent with the payment method given at booking
    CONFIRM = "confirm"
    REFUND = "refund"
    RECONCILE = "reconcile"  # ended unpaid: was its intent paid after all?
    NOTHING = "nothing"  # final, or waiting for the customer / the provider's webhook


class Booking(Aggregate):
    code: str | None = None  # (class defaults: a booking restored from an older snapshot)
    offer: bool = False

    @event("Placed")
    def __init__(
        self,
        booking_id: UUID,
        show_id: UUID,
        customer_id: UUID,
        seats: list[str],
        general: dict[str, int],
        amount_cents: int,
        currency: str,
        hold_expires_at: datetime,
        payment_method: str | None,
        code: str | None = None,
        offer: bool = False,
    ) -> None:
        # `code`: the presale code it was booked with; `offer`: held for a waiting-list entry
        # (not by the customer). Placed events stored before either existed lack them.
        self.code = code
        self.offer = offer
        self.show_id = show_id
        self.customer_id = customer_id
        self.seats = seats
        self.general = general
        self.amount_cents = amount_cents
        self.currency = currency
        self.hold_expires_at = hold_expires_at
        self.payment_method = payment_method
        self.status = HELD
        self.payment_intent_id: str | None = None
        self.paid_cents = 0
        self.refunded_cents = 0
        self.refund_id: str | None = None
        self.reason: str | None = None
        # Money on intents that did not pay for the booking (intent -> cents captured), and
        # the refund of each once given back.
        self.mismatched_payments: dict[str, int] = {}
        self.mismatch_refund_ids: dict[str, str] = {}
        # The show's reschedule its customer was last told of (the show's version after its
        # `Rescheduled`; 0: none), so that each reschedule is announced once.
        self.reschedule_announced = 0

    @staticmethod
    def create_id(booking_id: UUID, **_: Any) -> UUID:
        return booking_id

    @property
    def quantity(self) -> int:
        return len(self.seats) + sum(self.general.values())

    @property
    def refund_due(self) -> bool:
        """Money was taken but the booking did not end confirmed."""
        return self.paid_cents > self.refunded_cents and self.status in (CANCELLED, EXPIRED)

    @property
    def mismatch_refunds_due(self) -> dict[str, int]:
        """Money captured on intents that did not pay for the booking and not given back yet."""
        return {
            intent: cents
            for intent, cents in self.mismatched_payments.items()
            if cents > 0 and intent not in self.mismatch_refund_ids
        }

    def next_step(self) -> NextStep:
        """The step that moves this booking on now; NOTHING when it is done or must wait."""
        if self.mismatch_refunds_due:
            return NextStep.REFUND_MISMATCHED
        if self.status == HELD:
            return NextStep.REQUEST_PAYMENT
        if self.status == PAYMENT_REQUESTED and self.payment_method:
            return NextStep.CHARGE
        if self.status == PAID:
            return NextStep.CONFIRM
        if self.refund_due:
            return NextStep.REFUND
        ended_unpaid = self.status in (CANCELLED, EXPIRED) and self.paid_cents == 0
        if ended_unpaid and self.payment_intent_id is not None:
            return NextStep.RECONCILE
        return NextStep.NOTHING

    def payment_mismatch(
        self,
        payment_intent_id: str,
        amount_cents: int,
        currency: str | None,
        named_booking_id: UUID | None,
    ) -> str | None:
        """Why a payment reported for this booking does not pay for it (a MISMATCH_REASONS
        value), or None when it does. `currency` and `named_booking_id` are as the provider
        reports them (None: not reported)."""
        if payment_intent_id != self.payment_intent_id:
            return OTHER_INTENT
        if named_booking_id is not None and named_booking_id != self.id:
            return OTHER_BOOKING
        if amount_cents != self.amount_cents:
            return WRONG_AMOUNT
        if currency is not None and currency.upper() != self.currency.upper():
            return WRONG_CURRENCY
        return None

    def record_mismatched_payment(
        self, payment_intent_id: str, amount_cents: int, currency: str, reason: str
    ) -> None:
        """Money reported for this booking that does not pay for it, in any status: it never
        confirms the booking, and what was captured is due back (`mismatch_refunds_due`)."""
        if payment_intent_id in self.mismatched_payments or reason not in MISMATCH_REASONS:
            raise IllegalTransitionError(self.id, self.status, "record a mismatched payment")
        self._payment_mismatched(
            payment_intent_id=payment_intent_id,
            amount_cents=amount_cents,
            currency=currency,
            reason=reason,
        )

    @event("PaymentMismatched")
    def _payment_mismatched(
        self, payment_intent_id: str, amount_cents: int, currency: str, reason: str
    ) -> None:
        self.mismatched_payments[payment_intent_id] = amount_cents

    def refund_mismatched_payment(
        self, payment_intent_id: str, refund_id: str, amount_cents: int
    ) -> None:
        if self.mismatch_refunds_due.get(payment_intent_id) != amount_cents:
            raise IllegalTransitionError(self.id, self.status, "refund what was not paid")
        self._mismatched_payment_refunded(
            payment_intent_id=payment_intent_id, refund_id=refund_id, amount_cents=amount_cents
        )

    @event("MismatchedPaymentRefunded")
    def _mismatched_payment_refunded(
        self, payment_intent_id: str, refund_id: str, amount_cents: int
    ) -> None:
        self.mismatch_refund_ids[payment_intent_id] = refund_id

    def _check(self, action: str) -> None:
        if self.status not in LEGAL[action]:
            raise IllegalTransitionError(self.id, self.status, action)

    def request_payment(self, payment_intent_id: str) -> None:
        self._check("request payment")
        self._payment_requested(payment_intent_id=payment_intent_id)

    @event("PaymentRequested")
    def _payment_requested(self, payment_intent_id: str) -> None:
        self.payment_intent_id = payment_intent_id
        self.status = PAYMENT_REQUESTED

    def record_payment(self, payment_intent_id: str, amount_cents: int) -> None:
        """A payment arrived; on a booking already cancelled or expired it is kept for refund."""
        if self.status in LEGAL["record late payment"]:
            self._late_payment_received(
                payment_intent_id=payment_intent_id, amount_cents=amount_cents
            )
            return
        self._check("record payment")
        self._payment_succeeded(payment_intent_id=payment_intent_id, amount_cents=amount_cents)

    @event("PaymentSucceeded")
    def _payment_succeeded(self, payment_intent_id: str, amount_cents: int) -> None:
        self.payment_intent_id = payment_intent_id
        self.paid_cents += amount_cents
        self.status = PAID

    @event("LatePaymentReceived")
    def _late_payment_received(self, payment_intent_id: str, amount_cents: int) -> None:
        self.payment_intent_id = payment_intent_id
        self.paid_cents += amount_cents

    def record_payment_failure(self, reason: str) -> None:
        self._check("record payment failure")
        self._payment_failed(reason=reason)

    @event("PaymentFailed")
    def _payment_failed(self, reason: str) -> None:
        self.status = CANCELLED
        self.reason = reason

    def confirm(self) -> None:
        self._check("confirm")
        self._confirmed()

    @event("Confirmed")
    def _confirmed(self) -> None:
        self.status = CONFIRMED

    def cancel(self, reason: str) -> None:
        self._check("cancel")
        self._cancelled(reason=reason)

    def cancel_before_show(
        self, reason: str, at: datetime, show_starts_at: datetime, by_admin: bool = False
    ) -> None:
        """Cancel; a booking that was paid for (and so is refunded) only before the show,
        unless an admin cancels it (the show did not take place for this customer, say)."""
        paid = self.paid_cents > self.refunded_cents
        if paid and at >= show_starts_at and not by_admin:
            raise IllegalTransitionError(self.id, self.status, "cancel after the show started")
        self.cancel(reason)

    def cancel_unpaid(self, reason: str) -> None:
        """Cancel a booking nothing was paid for yet (held or awaiting payment), e.g. when its
        customer's account is deactivated; a paid one is the customer's, and stays."""
        self._check("cancel unpaid")
        self._cancelled(reason=reason)

    def reschedule_notice_due(self, show_version: int, starts_at: datetime, at: datetime) -> bool:
        """Whether its customer is still to hear of the show's reschedule recorded at
        `show_version` (the show's version after its `Rescheduled`) to `starts_at`: a ticket
        holder (paid or confirmed) not told of it, nor of a later one, before that start."""
        return (
            self.status in LEGAL["announce reschedule"]
            and show_version > self.reschedule_announced
            and at < starts_at
        )

    def announce_reschedule(
        self, show_version: int, starts_at: datetime, previous_starts_at: datetime, at: datetime
    ) -> None:
        """Tell the ticket holder the show moved to `starts_at` (the customer is e-mailed: they
        may keep the tickets, or cancel with a full refund before the new start). Once per
        reschedule: refused when not `reschedule_notice_due`."""
        self._check("announce reschedule")
        if show_version <= self.reschedule_announced:
            raise IllegalTransitionError(self.id, self.status, "announce a reschedule again")
        if at >= starts_at:
            raise IllegalTransitionError(self.id, self.status, "announce a start that is past")
        self._reschedule_announced(
            show_version=show_version, starts_at=starts_at, previous_starts_at=previous_starts_at
        )

    @event("RescheduleAnnounced")
    def _reschedule_announced(
        self, show_version: int, starts_at: datetime, previous_starts_at: datetime
    ) -> None:
        self.reschedule_announced = show_version

    @event("Cancelled")
    def _cancelled(self, reason: str) -> None:
        self.status = CANCELLED
        self.reason = reason

    def expire(self, at: datetime) -> None:
        self._check("expire")
        if at < self.hold_expires_at:
            raise IllegalTransitionError(self.id, self.status, "expire before the hold's expiry")
        self._expired(at=at)

    @event("Expired")
    def _expired(self, at: datetime) -> None:
        self.status = EXPIRED
        self.reason = "hold expired"

    def refund(self, refund_id: str, amount_cents: int) -> None:
        self._check("refund")
        if not self.refund_due or amount_cents != self.paid_cents - self.refunded_cents:
            raise IllegalTransitionError(self.id, self.status, "refund what was not paid")
        self._refunded(refund_id=refund_id, amount_cents=amount_cents)

    @event("Refunded")
    def _refunded(self, refund_id: str, amount_cents: int) -> None:
        self.refund_id = refund_id
        self.refunded_cents += amount_cents
        self.status = REFUNDED


def event_name(aggregate: type[Aggregate], name: str) -> str:
    """The log's type name (`type(event).__qualname__`, e.g. "Booking.Placed") of the event
    class that `@event(name)` nested in an aggregate; a renamed event fails here, at import."""
    found = getattr(aggregate, name, None)
    if not (isinstance(found, type) and issubclass(found, Aggregate.Event)):
        raise TypeError(f"{aggregate.__name__}.{name} is not an event class")
    return found.__qualname__


class BookingEvents:
    """The type names of a booking's events in the log, taken from its event classes."""

    PLACED: Final = event_name(Booking, "Placed")
    PAYMENT_REQUESTED: Final = event_name(Booking, "PaymentRequested")
    PAYMENT_SUCCEEDED: Final = event_name(Booking, "PaymentSucceeded")
    LATE_PAYMENT_RECEIVED: Final = event_name(Booking, "LatePaymentReceived")
    PAYMENT_FAILED: Final = event_name(Booking, "PaymentFailed")
    PAYMENT_MISMATCHED: Final = event_name(Booking, "PaymentMismatched")
    MISMATCHED_PAYMENT_REFUNDED: Final = event_name(Booking, "MismatchedPaymentRefunded")
    CONFIRMED: Final = event_name(Booking, "Confirmed")
    CANCELLED: Final = event_name(Booking, "Cancelled")
    EXPIRED: Final = event_name(Booking, "Expired")
    REFUNDED: Final = event_name(Booking, "Refunded")
    RESCHEDULE_ANNOUNCED: Final = event_name(Booking, "RescheduleAnnounced")


# The events that put money on a booking.
PAYMENT_EVENTS = frozenset({BookingEvents.PAYMENT_SUCCEEDED, BookingEvents.LATE_PAYMENT_RECEIVED})
