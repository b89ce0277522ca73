"""Best available: adjacent seats nearest the front and centre, else scattered, else GA."""

from __future__ import annotations

import pytest

from domain.errors import CapacityExceededError, TicketLimitError, UnknownSectionError
from tests.unit.factories import an_inventory, general, place_hold, seated


def test_picks_adjacent_seats_in_the_centre_of_the_front_row():
    inventory = an_inventory([seated("A", {"1": 10, "2": 10})])

    assert inventory.choose_best_available(2) == (["A-1-5", "A-1-6"], {})
    assert inventory.choose_best_available(4) == (["A-1-4", "A-1-5", "A-1-6", "A-1-7"], {})


def test_picks_the_free_block_nearest_the_centre_when_the_centre_is_taken():
    inventory = an_inventory([seated("A", {"1": 10})])
    place_hold(inventory, ["A-1-5", "A-1-6", "A-1-7"])

    assert inventory.choose_best_available(2) == (["A-1-3", "A-1-4"], {})


def test_moves_back_a_row_when_the_front_row_has_no_adjacent_block():
    inventory = an_inventory([seated("A", {"1": 10, "2": 10})])
    place_hold(inventory, ["A-1-2", "A-1-4", "A-1-6", "A-1-8", "A-1-10"])

    assert inventory.choose_best_available(2) == (["A-2-5", "A-2-6"], {})


def test_prefers_the_first_section_of_the_map():
    inventory = an_inventory([seated("A", {"1": 4}), seated("B", {"1": 4})])

    assert inventory.choose_best_available(2) == (["A-1-2", "A-1-3"], {})


def test_restricted_to_a_section_when_asked():
    inventory = an_inventory([seated("A", {"1": 4}), seated("B", {"1": 4, "2": 4})])

    assert inventory.choose_best_available(2, section="B") == (["B-1-2", "B-1-3"], {})


def test_a_general_admission_section_is_chosen_by_quantity():
    inventory = an_inventory([seated("A", {"1": 4}), general("GA", 5)])

    assert inventory.choose_best_available(3, section="GA") == ([], {"GA": 3})


def test_a_general_admission_section_without_enough_tickets_is_refused():
    inventory = an_inventory([general("GA", 5)])
    place_hold(inventory, [], {"GA": 4})

    with pytest.raises(CapacityExceededError) as error:
        inventory.choose_best_available(2, section="GA")

    assert (error.value.section, error.value.requested, error.value.available) == ("GA", 2, 1)


def test_a_seat_released_in_a_full_front_row_is_offered_again_first():
    inventory = an_inventory([seated("A", {"1": 2, "2": 2, "3": 4})])
    front = place_hold(inventory, ["A-1-1", "A-1-2"])
    place_hold(inventory, ["A-2-1", "A-2-2"])
    assert inventory.choose_best_available(2) == (["A-3-2", "A-3-3"], {})

    inventory.release(front, "expired")

    assert inventory.choose_best_available(2) == (["A-1-1", "A-1-2"], {})


def test_falls_back_to_scattered_seats_in_map_order_when_no_block_fits():
    inventory = an_inventory([seated("A", {"1": 3, "2": 3})])
    place_hold(inventory, ["A-1-2", "A-2-2"])

    assert inventory.choose_best_available(3) == (["A-1-1", "A-1-3", "A-2-1"], {})


def test_falls_back_to_general_admission_when_seats_run_short():
    inventory = an_inventory([seated("A", {"1": 2}), general("GA", 10)])

    assert inventory.choose_best_available(4) == ([], {"GA": 4})


def test_the_chosen_seats_can_be_held():
    inventory = an_inventory()
    seats, ga = inventory.choose_best_available(6)

    booking_id = place_hold(inventory, seats, ga)

    assert inventory.claim_of(booking_id) is not None


def test_not_enough_tickets_left_in_the_show_is_refused():
    inventory = an_inventory([seated("A", {"1": 3}), general("GA", 2)])
    place_hold(inventory, ["A-1-1"])

    with pytest.raises(CapacityExceededError) as error:
        inventory.choose_best_available(5)

    assert (error.value.section, error.value.requested, error.value.available) == (None, 5, 4)


def test_not_enough_seats_left_in_the_requested_section_is_refused():
    inventory = an_inventory([seated("A", {"1": 3}), seated("B", {"1": 10})])
    place_hold(inventory, ["A-1-2"])

    with pytest.raises(CapacityExceededError) as error:
        inventory.choose_best_available(3, section="A")

    assert (error.value.section, error.value.requested, error.value.available) == ("A", 3, 2)


def test_an_unknown_section_is_refused():
    inventory = an_inventory()

    with pytest.raises(UnknownSectionError):
        inventory.choose_best_available(2, section="BALCONY")


@pytest.mark.parametrize("quantity", [0, 11])
def test_best_available_asks_for_one_to_ten_tickets(quantity):
    inventory = an_inventory()

    with pytest.raises(TicketLimitError):
        inventory.choose_best_available(quantity)


def test_a_fragmented_row_is_offered_again_once_a_release_rejoins_its_block():
    inventory = an_inventory([seated("A", {"1": 6, "2": 6})])
    blocker = place_hold(inventory, ["A-1-3", "A-1-4"])
    place_hold(inventory, ["A-1-1", "A-1-6"])
    assert inventory.choose_best_available(3) == (["A-2-2", "A-2-3", "A-2-4"], {})

    inventory.release(blocker, reason="cancelled")

    assert inventory.choose_best_available(3) == (["A-1-2", "A-1-3", "A-1-4"], {})
