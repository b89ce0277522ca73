"""The audit's own way of applying an event (audit/appliers.py) builds the aggregate
`event.mutate` builds, and whenever an event is not the common case it is `mutate` that
decides, so the errors (the audit's findings) are eventsourcing's."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from eventsourcing.domain import OriginatorVersionError

from audit.appliers import apply_event
from domain.booking import Booking
from tests.unit.factories import a_booking, new_events


def booking_events() -> list[Any]:
    booking = a_booking()
    booking.request_payment("pi_1")
    booking.record_payment("pi_1", booking.amount_cents)
    booking.confirm()
    return new_events(booking)


def replayed(events: list[Any], apply: Any) -> Any:
    aggregate = None
    for event in events:
        aggregate = apply(event, aggregate)
    return aggregate


def forged(event: Any, **changes: Any) -> Any:
    """A copy of a stored event with attributes changed (None: removed), as a decoder makes
    it from a tampered record."""
    state = dict(vars(event))
    for name, value in changes.items():
        if value is None:
            state.pop(name)
        else:
            state[name] = value
    copy: Any = object.__new__(type(event))
    object.__setattr__(copy, "__dict__", state)
    return copy


def test_a_stream_rebuilds_to_the_aggregate_mutate_builds():
    events = booking_events()
    fast = replayed(events, apply_event)
    slow = replayed(events, lambda event, aggregate: event.mutate(aggregate))
    assert type(fast) is type(slow) is Booking
    assert fast.version == slow.version == len(events)
    assert pickle.dumps(vars(fast)) == pickle.dumps(vars(slow))


def outcome(event: Any, aggregate_from: list[Any], apply: Any) -> tuple[Any, Any]:
    """(the error's type and text, or None; the aggregate's state after)."""
    aggregate = replayed(aggregate_from, lambda e, a: e.mutate(a)) if aggregate_from else None
    try:
        apply(event, aggregate)
    except Exception as error:
        return (type(error), str(error)), None if aggregate is None else vars(aggregate)
    return None, None if aggregate is None else vars(aggregate)


@pytest.mark.parametrize(
    "case",
    [
        "missing-attribute",
        "missing-init-attribute",
        "version-gap",
        "repeated-creation",
        "no-aggregate-yet",
        "self-in-state",
    ],
)
def test_unusual_events_get_what_mutate_does(case: str):
    events = booking_events()
    created, requested = events[0], events[1]
    event, before = {
        "missing-attribute": (forged(requested, payment_intent_id=None), events[:1]),
        "missing-init-attribute": (forged(created, seats=None), []),
        "version-gap": (forged(requested, originator_version=5), events[:1]),
        "repeated-creation": (created, events[:2]),
        "no-aggregate-yet": (requested, []),
        "self-in-state": (forged(requested, self="forged"), events[:1]),
    }[case]
    fast = outcome(event, before, apply_event)
    slow = outcome(event, before, lambda e, a: e.mutate(a))
    assert fast[0] is not None  # each of them is an error
    assert fast == slow


def test_a_version_gap_is_the_error_the_audit_reports_as_one():
    events = booking_events()
    aggregate = replayed(events[:1], apply_event)
    with pytest.raises(OriginatorVersionError):
        apply_event(forged(events[1], originator_version=3), aggregate)
