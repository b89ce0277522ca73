"""The audit's rules for tickets, against logs forged to break them: tickets only for
confirmed bookings (one per place bought), no ticket admitted twice, no void ticket admitted.
A log the domain itself wrote passes."""

from __future__ import annotations

from typing import Any

from audit.invariants import Invariants
from audit.ticket_invariants import (
    ADMITTED_TWICE,
    INVALID_TRANSFERRED,
    TICKET_UNCONFIRMED,
    TICKETS_DIFFER,
    VOID_ADMITTED,
)
from domain.booking import Booking
from domain.door import DoorList
from domain.ids import ticket_id_for
from tests.unit.factories import T0, a_booking, new_events


def confirmed_booking() -> Booking:
    booking = a_booking()
    booking.request_payment("pi_1")
    booking.record_payment("pi_1", booking.amount_cents)
    booking.confirm()
    return booking


def audited(*batches: list[Any]) -> Invariants:
    """Events in the order given, through the audit."""
    invariants = Invariants()
    position = 0
    for batch in batches:
        for event in batch:
            position += 1
            invariants.apply(position, event)
    return invariants


def issue(door: DoorList, booking: Booking) -> None:
    door.issue(booking.id, booking.customer_id, "Ada", booking.seats, booking.general)


def forge(door: DoorList, kind: str, **fields: Any) -> None:
    door.trigger_event(getattr(DoorList, kind), **fields)


def test_a_log_of_issue_admission_transfer_and_voiding_passes():
    booking = confirmed_booking()
    door = DoorList(show_id=booking.show_id)
    issue(door, booking)
    door.admit(ticket_id_for(booking.id, 0), "north", "scan-1", T0)
    door.admit(ticket_id_for(booking.id, 0), "south", "scan-2", T0)  # answered, not recorded
    door.transfer(ticket_id_for(booking.id, 1), booking.customer_id, "Grace")
    before = [new_events(booking), new_events(door)]
    booking.cancel("refunded")
    door.void_booking(booking.id, "refunded")

    invariants = audited(*before, new_events(booking), new_events(door))

    assert invariants.violations == []


def test_tickets_for_an_unpaid_booking_are_reported():
    booking = a_booking()  # held: never paid
    door = DoorList(show_id=booking.show_id)
    issue(door, booking)

    invariants = audited(new_events(booking), new_events(door))

    [violation] = invariants.violations
    assert violation.rule == TICKET_UNCONFIRMED
    assert str(booking.id) in violation.message and "held" in violation.message


def test_tickets_issued_before_the_confirmation_are_reported():
    booking = confirmed_booking()
    door = DoorList(show_id=booking.show_id)
    issue(door, booking)
    events = new_events(booking)

    invariants = audited(events[:-1], new_events(door), events[-1:])

    assert [v.rule for v in invariants.violations] == [TICKET_UNCONFIRMED]


def test_tickets_for_other_places_than_bought_are_reported():
    booking = confirmed_booking()
    door = DoorList(show_id=booking.show_id)
    door.issue(booking.id, booking.customer_id, "Ada", ["A-1-5", "A-1-6", "A-1-7"], {})

    invariants = audited(new_events(booking), new_events(door))

    assert [v.rule for v in invariants.violations] == [TICKETS_DIFFER]


def test_a_second_admission_of_a_ticket_is_reported():
    """Given a ticket admitted at the north gate; when the log admits it again at the south
    gate (forged: the door list answers already-admitted); then the audit names both."""
    booking = confirmed_booking()
    door = DoorList(show_id=booking.show_id)
    issue(door, booking)
    ticket_id = ticket_id_for(booking.id, 0)
    door.admit(ticket_id, "north", "scan-1", T0)
    forge(door, "TicketAdmitted", ticket_id=ticket_id, gate="south", scan_id="scan-2", at=T0)

    invariants = audited(new_events(booking), new_events(door))

    [violation] = invariants.violations
    assert violation.rule == ADMITTED_TWICE
    assert "north" in violation.message and "south" in violation.message


def test_admitting_a_void_ticket_is_reported():
    booking = confirmed_booking()
    door = DoorList(show_id=booking.show_id)
    issue(door, booking)
    door.void_booking(booking.id, "refunded")
    ticket_id = ticket_id_for(booking.id, 0)
    forge(door, "TicketAdmitted", ticket_id=ticket_id, gate="north", scan_id="scan-1", at=T0)

    invariants = audited(new_events(booking), new_events(door))

    assert [v.rule for v in invariants.violations] == [VOID_ADMITTED]


def test_admitting_a_ticket_of_a_cancelled_booking_is_reported():
    booking = confirmed_booking()
    door = DoorList(show_id=booking.show_id)
    issue(door, booking)
    before = [new_events(booking), new_events(door)]
    booking.cancel("refunded")  # its tickets not voided (the bug this rule catches)
    ticket_id = ticket_id_for(booking.id, 0)
    door.admit(ticket_id, "north", "scan-1", T0)

    invariants = audited(*before, new_events(booking), new_events(door))

    [violation] = invariants.violations
    assert violation.rule == VOID_ADMITTED and "cancelled" in violation.message


def test_transferring_a_used_ticket_is_reported():
    booking = confirmed_booking()
    door = DoorList(show_id=booking.show_id)
    issue(door, booking)
    ticket_id = ticket_id_for(booking.id, 0)
    door.admit(ticket_id, "north", "scan-1", T0)
    forge(
        door,
        "TicketTransferred",
        ticket_id=ticket_id,
        new_ticket_id=ticket_id_for(booking.id, 9),
        to_holder_id=booking.customer_id,
        to_holder_name="Grace",
    )

    invariants = audited(new_events(booking), new_events(door))

    assert [v.rule for v in invariants.violations] == [INVALID_TRANSFERRED]
