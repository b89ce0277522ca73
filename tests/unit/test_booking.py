"""Booking: held -> payment_requested -> paid -> confirmed, or cancelled / expired / refunded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import uuid4

import pytest

from domain.booking import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    HELD,
    LEGAL,
    PAID,
    PAYMENT_REQUESTED,
    REFUNDED,
    Booking,
    BookingEvents,
    NextStep,
    event_name,
)
from domain.errors import IllegalTransitionError
from tests.unit.factories import HOLD_UNTIL, a_booking, event_names, new_events, replay, state_of

AMOUNT = 10_000


def test_placing_a_booking_holds_it():
    booking = a_booking(AMOUNT)

    assert booking.status == HELD
    assert booking.quantity == 2
    assert booking.paid_cents == 0
    assert not booking.refund_due
    [placed] = new_events(booking)
    assert type(placed).__qualname__ == "Booking.Placed"
    assert placed.amount_cents == AMOUNT


def test_a_paid_booking_is_confirmed():
    booking = a_booking(AMOUNT)

    booking.request_payment("pi_1")
    assert booking.status == PAYMENT_REQUESTED
    booking.record_payment("pi_1", AMOUNT)
    assert booking.status == PAID
    booking.confirm()

    assert booking.status == CONFIRMED
    assert booking.payment_intent_id == "pi_1"
    assert booking.paid_cents == AMOUNT
    assert not booking.refund_due
    assert event_names(new_events(booking)) == [
        "Placed",
        "PaymentRequested",
        "PaymentSucceeded",
        "Confirmed",
    ]


def test_payment_can_be_requested_again_with_a_new_intent():
    booking = a_booking(AMOUNT)
    booking.request_payment("pi_1")

    booking.request_payment("pi_2")

    assert (booking.status, booking.payment_intent_id) == (PAYMENT_REQUESTED, "pi_2")


def test_a_payment_can_arrive_before_it_was_requested():
    booking = a_booking(AMOUNT)

    booking.record_payment("pi_1", AMOUNT)

    assert booking.status == PAID


@pytest.mark.parametrize("requested", [False, True], ids=["held", "payment requested"])
def test_an_unpaid_booking_can_be_cancelled(requested):
    booking = a_booking(AMOUNT)
    if requested:
        booking.request_payment("pi_1")

    booking.cancel("customer changed their mind")

    assert (booking.status, booking.reason) == (CANCELLED, "customer changed their mind")
    assert not booking.refund_due


@pytest.mark.parametrize("requested", [False, True], ids=["held", "payment requested"])
def test_an_unpaid_booking_expires_at_its_hold_expiry(requested):
    booking = a_booking(AMOUNT)
    if requested:
        booking.request_payment("pi_1")

    booking.expire(at=HOLD_UNTIL)

    assert (booking.status, booking.reason) == (EXPIRED, "hold expired")
    last = new_events(booking)[-1]
    assert type(last).__qualname__ == "Booking.Expired"
    assert last.at == HOLD_UNTIL


def test_a_booking_cannot_expire_before_its_hold_expiry():
    booking = a_booking(AMOUNT)

    with pytest.raises(IllegalTransitionError):
        booking.expire(at=HOLD_UNTIL - timedelta(seconds=1))

    assert booking.status == HELD


def test_a_failed_payment_cancels_the_booking_and_keeps_the_reason():
    booking = a_booking(AMOUNT)
    booking.request_payment("pi_1")

    booking.record_payment_failure("card declined")

    assert (booking.status, booking.reason) == (CANCELLED, "card declined")
    assert type(new_events(booking)[-1]).__qualname__ == "Booking.PaymentFailed"


def test_a_cancelled_confirmed_booking_is_due_a_refund_until_refunded():
    booking = a_booking(AMOUNT)
    booking.request_payment("pi_1")
    booking.record_payment("pi_1", AMOUNT)
    booking.confirm()

    booking.cancel("show cancelled")
    assert booking.status == CANCELLED
    assert booking.refund_due
    booking.refund("re_1", AMOUNT)

    assert booking.status == REFUNDED
    assert (booking.refund_id, booking.refunded_cents) == ("re_1", AMOUNT)
    assert not booking.refund_due


def test_a_late_payment_on_an_expired_booking_is_kept_for_refund():
    booking = a_booking(AMOUNT)
    booking.request_payment("pi_1")
    booking.expire(at=HOLD_UNTIL)

    booking.record_payment("pi_1", AMOUNT)
    assert booking.status == EXPIRED
    assert booking.refund_due
    assert type(new_events(booking)[-1]).__qualname__ == "Booking.LatePaymentReceived"
    booking.refund("re_1", AMOUNT)

    assert booking.status == REFUNDED
    assert not booking.refund_due


@pytest.mark.parametrize("amount", [AMOUNT - 1, AMOUNT + 1])
def test_a_refund_of_the_wrong_amount_is_refused(amount):
    booking = a_booking(AMOUNT)
    booking.record_payment("pi_1", AMOUNT)
    booking.cancel("show cancelled")

    with pytest.raises(IllegalTransitionError):
        booking.refund("re_1", amount)

    assert booking.status == CANCELLED
    assert booking.refund_due


def test_a_refund_of_a_booking_never_paid_is_refused():
    booking = a_booking(AMOUNT)
    booking.cancel("customer changed their mind")

    with pytest.raises(IllegalTransitionError):
        booking.refund("re_1", 0)


def test_replaying_a_bookings_events_rebuilds_the_booking():
    booking = a_booking(AMOUNT)
    booking.request_payment("pi_1")
    booking.expire(at=HOLD_UNTIL)
    booking.record_payment("pi_1", AMOUNT)

    rebuilt = replay(new_events(booking))

    assert state_of(rebuilt) == state_of(booking)


# --- every transition not in LEGAL is refused ---


def _held() -> Booking:
    return a_booking(AMOUNT)


def _payment_requested() -> Booking:
    booking = _held()
    booking.request_payment("pi_1")
    return booking


def _paid() -> Booking:
    booking = _payment_requested()
    booking.record_payment("pi_1", AMOUNT)
    return booking


def _confirmed() -> Booking:
    booking = _paid()
    booking.confirm()
    return booking


def _cancelled_after_payment() -> Booking:
    booking = _paid()
    booking.cancel("show cancelled")
    return booking


def _expired_then_paid() -> Booking:
    booking = _payment_requested()
    booking.expire(at=HOLD_UNTIL)
    booking.record_payment("pi_1", AMOUNT)
    return booking


def _refunded() -> Booking:
    booking = _cancelled_after_payment()
    booking.refund("re_1", AMOUNT)
    return booking


BOOKINGS_BY_STATUS: dict[str, Callable[[], Booking]] = {
    HELD: _held,
    PAYMENT_REQUESTED: _payment_requested,
    PAID: _paid,
    CONFIRMED: _confirmed,
    CANCELLED: _cancelled_after_payment,
    EXPIRED: _expired_then_paid,
    REFUNDED: _refunded,
}

OLD_START = HOLD_UNTIL + timedelta(days=30)
NEW_START = OLD_START + timedelta(days=7)

# A payment is recorded by one command whether it is on time or late.
ACTIONS: dict[str, Callable[[Booking], None]] = {
    "request payment": lambda b: b.request_payment("pi_2"),
    "record payment": lambda b: b.record_payment("pi_2", AMOUNT),
    "record payment failure": lambda b: b.record_payment_failure("card declined"),
    "confirm": lambda b: b.confirm(),
    "cancel": lambda b: b.cancel("changed my mind"),
    "expire": lambda b: b.expire(at=HOLD_UNTIL),
    "refund": lambda b: b.refund("re_2", AMOUNT),
    "announce reschedule": lambda b: b.announce_reschedule(2, NEW_START, OLD_START, at=HOLD_UNTIL),
    "cancel unpaid": lambda b: b.cancel_unpaid("account deactivated"),
}


# The lifecycle, written out independently of domain.booking.LEGAL.
LIFECYCLE: dict[str, set[str]] = {
    "request payment": {HELD, PAYMENT_REQUESTED},
    "record payment": {HELD, PAYMENT_REQUESTED},
    "record late payment": {CANCELLED, EXPIRED},
    "record payment failure": {HELD, PAYMENT_REQUESTED},
    "confirm": {PAID},
    "cancel": {HELD, PAYMENT_REQUESTED, PAID, CONFIRMED},
    "expire": {HELD, PAYMENT_REQUESTED},
    "refund": {CANCELLED, EXPIRED},
    "announce reschedule": {PAID, CONFIRMED},
    "cancel unpaid": {HELD, PAYMENT_REQUESTED},
}


def test_the_legal_table_is_the_booking_lifecycle():
    assert LEGAL == LIFECYCLE
    assert set(ACTIONS) | {"record late payment"} == set(LIFECYCLE)


def _legal_from(action: str) -> set[str]:
    if action == "record payment":
        return LIFECYCLE["record payment"] | LIFECYCLE["record late payment"]
    return LIFECYCLE[action]


ILLEGAL = [
    pytest.param(status, action, id=f"{action} when {status}")
    for status in BOOKINGS_BY_STATUS
    for action in ACTIONS
    if status not in _legal_from(action)
]
ALLOWED = [
    pytest.param(status, action, id=f"{action} when {status}")
    for status in BOOKINGS_BY_STATUS
    for action in ACTIONS
    if status in _legal_from(action)
]


@pytest.mark.parametrize(("status", "action"), ILLEGAL)
def test_an_illegal_transition_is_refused_and_records_nothing(status, action):
    booking = BOOKINGS_BY_STATUS[status]()
    new_events(booking)

    with pytest.raises(IllegalTransitionError) as error:
        ACTIONS[action](booking)

    assert (error.value.booking_id, error.value.status, error.value.action) == (
        booking.id,
        status,
        action,
    )
    assert booking.status == status
    assert new_events(booking) == []


@pytest.mark.parametrize(("status", "action"), ALLOWED)
def test_a_legal_transition_is_accepted(status, action):
    booking = BOOKINGS_BY_STATUS[status]()
    new_events(booking)

    ACTIONS[action](booking)

    assert len(new_events(booking)) == 1


# --- the next step: what moves a booking on without its customer ---


def _requested_without_payment_method() -> Booking:
    """The customer pays on the provider's page: the provider's webhook moves it on."""
    held = _held()
    booking = Booking(
        booking_id=uuid4(),
        show_id=held.show_id,
        customer_id=held.customer_id,
        seats=held.seats,
        general=held.general,
        amount_cents=held.amount_cents,
        currency=held.currency,
        hold_expires_at=held.hold_expires_at,
        payment_method=None,
    )
    booking.request_payment("pi_1")
    return booking


def _cancelled_unpaid() -> Booking:
    booking = _payment_requested()
    booking.cancel("changed my mind")
    return booking


def _cancelled_before_an_intent() -> Booking:
    booking = _held()
    booking.cancel("changed my mind")
    return booking


def _expired_unpaid() -> Booking:
    booking = _payment_requested()
    booking.expire(at=HOLD_UNTIL)
    return booking


def _confirmed_with_mismatched_money() -> Booking:
    booking = _confirmed()
    booking.record_mismatched_payment("pi_other", 500, "EUR", "other-intent")
    return booking


def _mismatched_money_refunded() -> Booking:
    booking = _confirmed_with_mismatched_money()
    booking.refund_mismatched_payment("pi_other", "re_other", 500)
    return booking


NEXT_STEPS: list[tuple[Callable[[], Booking], NextStep]] = [
    (_held, NextStep.REQUEST_PAYMENT),
    (_payment_requested, NextStep.CHARGE),
    (_requested_without_payment_method, NextStep.NOTHING),
    (_paid, NextStep.CONFIRM),
    (_confirmed, NextStep.NOTHING),
    (_cancelled_after_payment, NextStep.REFUND),
    (_expired_then_paid, NextStep.REFUND),
    (_refunded, NextStep.NOTHING),
    (_cancelled_unpaid, NextStep.RECONCILE),
    (_expired_unpaid, NextStep.RECONCILE),
    (_cancelled_before_an_intent, NextStep.NOTHING),
    (_confirmed_with_mismatched_money, NextStep.REFUND_MISMATCHED),
    (_mismatched_money_refunded, NextStep.NOTHING),
]


@pytest.mark.parametrize(
    ("make", "step"), [pytest.param(m, s, id=m.__name__.strip("_")) for m, s in NEXT_STEPS]
)
def test_the_next_step_follows_the_lifecycle(make, step):
    assert make().next_step() is step


def test_money_that_did_not_pay_is_given_back_before_anything_else():
    booking = _held()
    booking.record_mismatched_payment("pi_other", 500, "EUR", "wrong-amount")

    assert booking.next_step() is NextStep.REFUND_MISMATCHED


def test_event_names_are_those_of_the_event_classes_in_the_log():
    booking = _refunded()
    logged = {type(e).__qualname__ for e in new_events(booking)}

    assert {
        BookingEvents.PLACED,
        BookingEvents.PAYMENT_REQUESTED,
        BookingEvents.PAYMENT_SUCCEEDED,
        BookingEvents.CANCELLED,
        BookingEvents.REFUNDED,
    } == logged
    assert BookingEvents.PLACED == "Booking.Placed"


def test_a_name_that_is_no_event_of_the_aggregate_is_refused():
    with pytest.raises(TypeError, match=r"Booking\.Shipped is not an event class"):
        event_name(Booking, "Shipped")


# --- a show's reschedule announced to its ticket holders ---


def test_a_ticket_holder_is_told_of_a_reschedule_once():
    booking = _confirmed()
    new_events(booking)

    assert booking.reschedule_notice_due(2, NEW_START, at=HOLD_UNTIL)
    booking.announce_reschedule(2, NEW_START, OLD_START, at=HOLD_UNTIL)

    [announced] = new_events(booking)
    assert type(announced).__qualname__ == BookingEvents.RESCHEDULE_ANNOUNCED
    assert (announced.show_version, announced.starts_at, announced.previous_starts_at) == (
        2,
        NEW_START,
        OLD_START,
    )
    assert booking.status == CONFIRMED  # the tickets stay valid for the new date
    assert not booking.reschedule_notice_due(2, NEW_START, at=HOLD_UNTIL)
    with pytest.raises(IllegalTransitionError, match="announce a reschedule again"):
        booking.announce_reschedule(2, NEW_START, OLD_START, at=HOLD_UNTIL)
    assert new_events(booking) == []


def test_each_reschedule_is_told_but_never_an_older_one_after_a_newer():
    booking = _paid()
    later = NEW_START + timedelta(days=1)
    booking.announce_reschedule(3, NEW_START, OLD_START, at=HOLD_UNTIL)
    booking.announce_reschedule(5, later, NEW_START, at=HOLD_UNTIL)

    assert booking.reschedule_announced == 5
    assert not booking.reschedule_notice_due(4, NEW_START, at=HOLD_UNTIL)  # superseded
    with pytest.raises(IllegalTransitionError):
        booking.announce_reschedule(4, NEW_START, OLD_START, at=HOLD_UNTIL)


def test_no_reschedule_is_announced_once_the_new_start_is_past():
    booking = _confirmed()

    assert not booking.reschedule_notice_due(2, NEW_START, at=NEW_START)
    with pytest.raises(IllegalTransitionError, match="past"):
        booking.announce_reschedule(2, NEW_START, OLD_START, at=NEW_START)


@pytest.mark.parametrize("status", [HELD, PAYMENT_REQUESTED, CANCELLED, EXPIRED, REFUNDED])
def test_only_ticket_holders_hear_of_a_reschedule(status):
    assert not BOOKINGS_BY_STATUS[status]().reschedule_notice_due(2, NEW_START, at=HOLD_UNTIL)


def test_a_replayed_booking_remembers_the_reschedule_it_was_told_of():
    booking = _confirmed()
    booking.announce_reschedule(4, NEW_START, OLD_START, at=HOLD_UNTIL)

    rebuilt = replay(new_events(booking))

    assert rebuilt.reschedule_announced == 4
    assert state_of(rebuilt) == state_of(booking)


# --- unpaid bookings released when the account is deactivated ---


@pytest.mark.parametrize("status", [HELD, PAYMENT_REQUESTED])
def test_an_unpaid_booking_is_cancelled_with_the_reason(status):
    booking = BOOKINGS_BY_STATUS[status]()

    booking.cancel_unpaid("account deactivated")

    assert (booking.status, booking.reason) == (CANCELLED, "account deactivated")
    assert not booking.refund_due


@pytest.mark.parametrize("status", [PAID, CONFIRMED])
def test_a_paid_booking_is_not_cancelled_as_unpaid(status):
    booking = BOOKINGS_BY_STATUS[status]()

    with pytest.raises(IllegalTransitionError, match="cancel unpaid"):
        booking.cancel_unpaid("account deactivated")
    assert booking.status == status
