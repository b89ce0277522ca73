"""The organiser's controls on SeatInventory: repricing, rescheduling, whether a hold was ever
placed, blocked seats and general-admission capacity."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import (
    CapacityBelowTakenError,
    CapacityExceededError,
    InvalidShowError,
    NotGeneralAdmissionError,
    SaleNotOpenError,
    SeatsTakenError,
    SeatsUnavailableError,
    UnknownSeatsError,
    UnknownSectionError,
)
from domain.inventory import SeatInventory
from domain.seatmap import MAX_SEATS_PER_SHOW
from tests.unit.factories import (
    FLOOR_CENTS,
    STD_CENTS,
    T0,
    an_inventory,
    event_names,
    general,
    new_events,
    place_hold,
    replay,
    seated,
    state_of,
)

# --- tier prices ---


def test_a_repriced_tier_is_what_new_holds_pay():
    """Given an inventory with STD at 50.00; when STD is repriced to 65.00; then TierRepriced
    is recorded and the price of STD seats is the new one."""
    inventory = an_inventory()
    new_events(inventory)

    inventory.reprice("STD", 6_500)

    [repriced] = new_events(inventory)
    assert event_names([repriced]) == ["TierRepriced"]
    assert (repriced.tier, repriced.price_cents) == ("STD", 6_500)
    assert inventory.price_of(["A-1-1"], {"GA": 1}) == 6_500 + FLOOR_CENTS


def test_a_hold_placed_before_a_repricing_keeps_its_claim():
    """The amount a booking pays is fixed when it is placed (price_of at that moment): the
    repricing changes what later holds cost, never an earlier claim."""
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1", "A-1-2"])
    held_price = inventory.price_of(["A-1-1", "A-1-2"], {})

    inventory.reprice("STD", 1)

    assert held_price == 2 * STD_CENTS
    claim = inventory.claim_of(booking_id)
    assert claim is not None and claim.seats == ["A-1-1", "A-1-2"]
    assert inventory.price_of(["A-1-3"], {}) == 1


@pytest.mark.parametrize(
    ("tier", "cents", "message"),
    [("VIP", 100, "unknown price tier"), ("STD", -1, "negative price")],
)
def test_repricing_an_unknown_tier_or_to_a_negative_price_is_refused(tier, cents, message):
    inventory = an_inventory()
    new_events(inventory)

    with pytest.raises(InvalidShowError, match=message):
        inventory.reprice(tier, cents)

    assert new_events(inventory) == []
    assert inventory.price_tiers == {"STD": STD_CENTS, "FLOOR": FLOOR_CENTS}


def test_repricing_to_the_current_price_records_nothing():
    inventory = an_inventory()
    new_events(inventory)

    inventory.reprice("STD", STD_CENTS)

    assert new_events(inventory) == []


# --- the start ---


def test_a_rescheduled_show_refuses_holds_from_its_new_start():
    """Given a show starting at T0 + 1 day; when it is moved to T0; then a hold at T0 is
    refused and the inventory recorded Rescheduled."""
    inventory = an_inventory()
    inventory.reschedule(T0 + timedelta(days=1))
    place_hold(inventory, ["A-1-1"], now=T0)
    new_events(inventory)

    inventory.reschedule(T0)

    [rescheduled] = new_events(inventory)
    assert event_names([rescheduled]) == ["Rescheduled"]
    assert rescheduled.starts_at == inventory.starts_at == T0
    with pytest.raises(SaleNotOpenError, match="started"):
        place_hold(inventory, ["A-1-2"], now=T0)


def test_rescheduling_to_the_same_start_records_nothing():
    inventory = an_inventory()
    inventory.reschedule(T0)
    new_events(inventory)

    inventory.reschedule(T0)

    assert new_events(inventory) == []


# --- whether a hold was ever placed ---


def test_an_inventory_remembers_that_a_hold_was_placed_even_once_released():
    inventory = an_inventory()
    assert inventory.ever_held is False

    booking_id = place_hold(inventory, ["A-1-1"])
    inventory.release(booking_id, "cancelled", at=T0)

    assert inventory.ever_held is True
    assert replay(new_events(inventory)).ever_held is True


# --- blocked seats ---


def test_blocked_seats_are_off_sale():
    """Given a free seat; when it is blocked; then SeatsBlocked names it and its reason, it is
    not free, a hold on it is refused and the free count drops."""
    inventory = an_inventory()
    new_events(inventory)

    blocked = inventory.block(["A-1-5", "A-1-6"], "camera position")

    [event] = new_events(inventory)
    assert event_names([event]) == ["SeatsBlocked"]
    assert (event.seats, event.reason) == (["A-1-5", "A-1-6"], "camera position")
    assert blocked == ["A-1-5", "A-1-6"]
    assert not inventory.is_free("A-1-5")
    assert inventory.free_count() == 28 + 20
    with pytest.raises(SeatsUnavailableError) as error:
        place_hold(inventory, ["A-1-4", "A-1-5"])
    assert error.value.seats == ["A-1-5"]


def test_best_available_skips_blocked_seats():
    """Given the centre of the front row blocked; when two seats are asked for; then the best
    block around them is offered; with the whole front row blocked, the second row."""
    inventory = an_inventory([seated("A", {"1": 10, "2": 10})])
    inventory.block(["A-1-5", "A-1-6"], "sound desk")

    assert inventory.choose_best_available(2) == (["A-1-3", "A-1-4"], {})

    inventory.block([f"A-1-{n}" for n in range(1, 11)], "sound desk")
    assert inventory.choose_best_available(2) == (["A-2-5", "A-2-6"], {})


def test_best_available_scatters_around_blocked_seats():
    """Every other seat blocked: no two adjacent, so the free ones are taken in map order."""
    inventory = an_inventory([seated("A", {"1": 6})])
    inventory.block(["A-1-2", "A-1-4", "A-1-6"], "distancing")

    assert inventory.choose_best_available(3) == (["A-1-1", "A-1-3", "A-1-5"], {})
    with pytest.raises(CapacityExceededError):
        inventory.choose_best_available(4)


def test_blocking_a_held_or_sold_seat_is_refused_naming_it():
    """Given A-1-1 held and A-1-2 sold; when A-1-1..3 are blocked; then nothing is blocked and
    the error names the held and the sold seat."""
    inventory = an_inventory()
    place_hold(inventory, ["A-1-1"])
    inventory.sell(place_hold(inventory, ["A-1-2"]))
    new_events(inventory)

    with pytest.raises(SeatsTakenError) as error:
        inventory.block(["A-1-1", "A-1-2", "A-1-3"], "broken")

    assert error.value.seats == ["A-1-1", "A-1-2"]
    assert (error.value.held, error.value.sold) == (["A-1-1"], ["A-1-2"])
    assert "A-1-1 (held)" in str(error.value) and "A-1-2 (sold)" in str(error.value)
    assert new_events(inventory) == [] and inventory.is_free("A-1-3")


def test_blocking_unknown_seats_is_refused():
    inventory = an_inventory()
    new_events(inventory)

    with pytest.raises(UnknownSeatsError) as error:
        inventory.block(["A-1-1", "Z-9-9"], "broken")

    assert error.value.seats == ["Z-9-9"]
    assert new_events(inventory) == []


@pytest.mark.parametrize("reason", ["", "   ", "x" * 201])
def test_a_block_needs_a_reason_of_1_to_200_characters(reason):
    inventory = an_inventory()

    with pytest.raises(InvalidShowError):
        inventory.block(["A-1-1"], reason)

    assert inventory.is_free("A-1-1")


def test_blocking_is_idempotent_and_keeps_the_first_reason():
    """Given A-1-1 blocked; when A-1-1 and A-1-2 are blocked (A-1-2 twice); then only A-1-2 is
    recorded, once; blocking them all again records nothing."""
    inventory = an_inventory()
    inventory.block(["A-1-1"], "house seat")
    new_events(inventory)

    newly = inventory.block(["A-1-1", "A-1-2", "A-1-2"], "broken")

    assert newly == ["A-1-2"]
    [event] = new_events(inventory)
    assert event.seats == ["A-1-2"]
    assert inventory.blocked == {"A-1-1": "house seat", "A-1-2": "broken"}
    assert inventory.block(["A-1-1", "A-1-2"], "again") == []
    assert new_events(inventory) == []
    assert inventory.free_count() == 28 + 20


def test_unblocked_seats_are_on_sale_again():
    """Given the front row blocked; when it is unblocked; then SeatsUnblocked names the seats
    and best-available offers the front row again."""
    inventory = an_inventory([seated("A", {"1": 4, "2": 4})])
    inventory.block(["A-1-1", "A-1-2", "A-1-3", "A-1-4"], "press")
    assert inventory.choose_best_available(2) == (["A-2-2", "A-2-3"], {})
    new_events(inventory)

    unblocked = inventory.unblock(["A-1-2", "A-1-3"])

    [event] = new_events(inventory)
    assert event_names([event]) == ["SeatsUnblocked"]
    assert event.seats == unblocked == ["A-1-2", "A-1-3"]
    assert inventory.choose_best_available(2) == (["A-1-2", "A-1-3"], {})
    assert inventory.blocked == {"A-1-1": "press", "A-1-4": "press"}
    place_hold(inventory, ["A-1-2"])


def test_unblocking_a_seat_that_is_not_blocked_changes_nothing():
    """Idempotent: a free or held seat that is not blocked is left as it is."""
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1"])
    new_events(inventory)

    assert inventory.unblock(["A-1-1", "A-1-2"]) == []

    assert new_events(inventory) == []
    assert inventory.holder["A-1-1"] == booking_id.hex


def test_unblocking_unknown_seats_is_refused():
    inventory = an_inventory()

    with pytest.raises(UnknownSeatsError):
        inventory.unblock(["A-99-1"])


def test_blocked_seats_are_known_again_when_the_inventory_is_replayed():
    inventory = an_inventory()
    inventory.block(["A-1-1", "A-2-2"], "broken")
    inventory.unblock(["A-1-1"])

    rebuilt = replay(new_events(inventory))

    assert state_of(rebuilt) == state_of(inventory)
    assert rebuilt.blocked == {"A-2-2": "broken"}


# --- general-admission capacity ---


def test_a_ga_section_s_capacity_can_be_raised():
    """Given GA sold out (20 of 20); when its capacity is raised to 25; then
    GeneralCapacityChanged is recorded and five more tickets can be held."""
    inventory = an_inventory()
    place_hold(inventory, [], {"GA": 10})
    place_hold(inventory, [], {"GA": 10})
    new_events(inventory)

    assert inventory.change_capacity("GA", 25) is True

    [event] = new_events(inventory)
    assert event_names([event]) == ["GeneralCapacityChanged"]
    assert (event.section, event.capacity) == ("GA", 25)
    assert inventory.general["GA"].left == 5
    assert inventory.choose_best_available(5, section="GA") == ([], {"GA": 5})


def test_a_ga_section_s_capacity_can_be_lowered_down_to_what_is_taken():
    inventory = an_inventory()
    place_hold(inventory, [], {"GA": 3})
    inventory.sell(place_hold(inventory, [], {"GA": 4}))

    inventory.change_capacity("GA", 7)

    assert inventory.general["GA"].left == 0
    with pytest.raises(CapacityExceededError):
        place_hold(inventory, [], {"GA": 1})


def test_lowering_a_ga_capacity_below_what_is_taken_is_refused_naming_it():
    """Given 3 GA tickets held and 4 sold; when the capacity is set to 6; then it is refused,
    the error says 7 are taken (3 held, 4 sold) and nothing is recorded."""
    inventory = an_inventory()
    place_hold(inventory, [], {"GA": 3})
    inventory.sell(place_hold(inventory, [], {"GA": 4}))
    new_events(inventory)

    with pytest.raises(CapacityBelowTakenError) as error:
        inventory.change_capacity("GA", 6)

    assert (error.value.taken, error.value.held, error.value.sold) == (7, 3, 4)
    assert "7 tickets taken (3 held, 4 sold)" in str(error.value)
    assert new_events(inventory) == [] and inventory.general["GA"].capacity == 20


def test_an_empty_ga_section_can_be_closed_with_capacity_zero():
    inventory = an_inventory()

    inventory.change_capacity("GA", 0)

    assert inventory.free_count() == 30
    with pytest.raises(CapacityExceededError):
        inventory.choose_best_available(1, section="GA")


def test_setting_the_same_capacity_records_nothing():
    inventory = an_inventory()
    new_events(inventory)

    assert inventory.change_capacity("GA", 20) is False

    assert new_events(inventory) == []


def test_only_a_known_general_admission_section_has_a_capacity():
    inventory = an_inventory()

    with pytest.raises(UnknownSectionError):
        inventory.change_capacity("BALCONY", 10)
    with pytest.raises(NotGeneralAdmissionError, match="seated"):
        inventory.change_capacity("A", 10)


def test_a_capacity_beyond_what_a_show_may_sell_or_below_zero_is_refused():
    inventory = an_inventory([seated("A", {"1": 10}), general("GA", 20), general("PIT", 5)])

    with pytest.raises(InvalidShowError, match="at most"):
        inventory.change_capacity("GA", MAX_SEATS_PER_SHOW - 10 - 5 + 1)
    with pytest.raises(InvalidShowError):
        inventory.change_capacity("GA", -1)

    inventory.change_capacity("GA", MAX_SEATS_PER_SHOW - 10 - 5)
    assert inventory.general["GA"].capacity == MAX_SEATS_PER_SHOW - 15


def test_capacity_changes_are_known_again_when_the_inventory_is_replayed():
    inventory = an_inventory()
    inventory.change_capacity("GA", 50)

    rebuilt: SeatInventory = replay(new_events(inventory))

    assert rebuilt.general["GA"].capacity == 50
    assert state_of(rebuilt) == state_of(inventory)
