"""The audit's rules for the organiser's controls, against logs forged to break them: no
blocked seat is ever held or sold (nor a held one blocked) and no GA section's capacity goes
below its tickets held and sold. A log the domain itself wrote passes."""

from __future__ import annotations

from uuid import uuid4

from audit.invariants import BLOCKED_SEAT_TAKEN, GA_BELOW_TAKEN, Invariants
from domain.inventory import SeatInventory
from tests.unit.factories import HOLD_UNTIL, an_inventory, new_events, place_hold


def audited(inventory: SeatInventory) -> Invariants:
    """The inventory's events, in order, through the audit."""
    invariants = Invariants()
    for position, event in enumerate(new_events(inventory), start=1):
        invariants.apply(position, event)
    return invariants


def test_a_log_of_legal_blocks_unblocks_and_capacity_changes_passes():
    inventory = an_inventory()
    inventory.reprice("STD", 7_000)
    place_hold(inventory, ["A-1-1"], {"GA": 3})
    inventory.block(["A-1-2", "A-1-3"], "camera")
    inventory.unblock(["A-1-3"])
    place_hold(inventory, ["A-1-3"])
    inventory.change_capacity("GA", 3)
    inventory.change_capacity("GA", 30)

    invariants = audited(inventory)

    assert invariants.violations == [] and invariants.events == 9


def test_a_hold_of_a_blocked_seat_is_reported():
    """Given A-1-5 blocked; when the log holds it anyway (forged: the domain refuses it);
    then the audit names the seat, the booking and the block's reason."""
    inventory = an_inventory()
    inventory.block(["A-1-5"], "broken seat")
    booking_id = uuid4()
    inventory.trigger_event(
        SeatInventory.SeatsHeld,
        booking_id=booking_id,
        customer_id=uuid4(),
        seats=["A-1-5"],
        general={},
        until=HOLD_UNTIL,
    )

    invariants = audited(inventory)

    [violation] = invariants.violations
    assert (violation.rule, violation.position) == (BLOCKED_SEAT_TAKEN, 4)
    assert "A-1-5" in violation.message and str(booking_id) in violation.message
    assert "broken seat" in violation.message


def test_blocking_a_sold_seat_is_reported():
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1"])
    inventory.sell(booking_id)
    inventory._seats_blocked(seats=["A-1-1"], reason="forged")  # the domain refuses it

    [violation] = audited(inventory).violations

    assert violation.rule == BLOCKED_SEAT_TAKEN
    assert f"seat A-1-1 blocked while sold to booking {booking_id}" in violation.message


def test_a_ga_capacity_below_what_is_held_and_sold_is_reported():
    inventory = an_inventory()
    place_hold(inventory, [], {"GA": 3})
    inventory._general_capacity_changed(section="GA", capacity=2)  # the domain refuses it

    [violation] = audited(inventory).violations

    assert violation.rule == GA_BELOW_TAKEN
    assert "capacity set to 2 with 3 tickets held or sold" in violation.message
