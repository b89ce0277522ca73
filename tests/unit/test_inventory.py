"""SeatInventory: holding, selling and releasing seats and general-admission tickets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from domain.errors import (
    CapacityExceededError,
    CustomerTicketLimitError,
    HoldNotFoundError,
    LapsedHoldLimitError,
    SaleNotOpenError,
    SeatsUnavailableError,
    TicketLimitError,
    UnknownSeatsError,
    UnknownSectionError,
)
from domain.inventory import (
    DEFAULT_TICKETS_PER_CUSTOMER,
    MAX_TICKETS_PER_BOOKING,
    Claim,
    LapsedHoldLimit,
    SeatInventory,
)
from tests.unit.factories import (
    FLOOR_CENTS,
    HOLD_UNTIL,
    STD_CENTS,
    T0,
    a_seat_map,
    an_inventory,
    event_names,
    general,
    new_events,
    place_hold,
    price_tiers,
    replay,
    seated,
    state_of,
)


class BoxOffice(Application[UUID]):
    name = "InventoryUpcastingBoxOffice"


# --- the seat map ---


def test_seats_are_expanded_from_the_map_as_section_row_number():
    inventory = an_inventory([seated("A", {"1": 2, "2": 3}), seated("VIP", {"AA": 12})])

    assert list(inventory.seat_tier)[:5] == ["A-1-1", "A-1-2", "A-2-1", "A-2-2", "A-2-3"]
    assert "VIP-AA-12" in inventory.seat_tier
    assert all(inventory.is_free(seat) for seat in inventory.seat_tier)
    assert not inventory.is_free("A-1-3")
    assert inventory.free_count() == 5 + 12


def test_free_count_includes_general_admission():
    inventory = an_inventory([seated("A", {"1": 4}), general("GA", 20)])

    place_hold(inventory, ["A-1-1"], {"GA": 3})

    assert inventory.free_count() == 3 + 17


def test_price_of_adds_seat_tiers_and_general_admission_tickets():
    inventory = an_inventory()

    price = inventory.price_of(["A-1-1", "A-2-1"], {"GA": 3})

    assert price == 2 * STD_CENTS + 3 * FLOOR_CENTS


# --- the sale ---


def test_no_hold_before_the_sale_opens():
    inventory = an_inventory(on_sale=False)

    with pytest.raises(SaleNotOpenError) as error:
        place_hold(inventory, ["A-1-1"])

    assert error.value.show_id == inventory.show_id


def test_no_hold_after_the_sale_closes():
    inventory = an_inventory()
    inventory.close_sale()

    with pytest.raises(SaleNotOpenError):
        place_hold(inventory, [], {"GA": 1})


def test_a_reopened_sale_takes_holds_again():
    inventory = an_inventory()
    inventory.close_sale()

    inventory.open_sale()
    booking_id = place_hold(inventory, ["A-1-1"])

    assert inventory.claim_of(booking_id) is not None


def test_no_hold_once_the_show_started_even_while_on_sale():
    """Given an inventory on sale for a show starting at T0;
    when a customer holds at T0 or later; then it is refused, and nothing is recorded."""
    inventory = an_inventory_capped(starts_at=T0)
    new_events(inventory)

    for now in (T0, T0 + timedelta(hours=2)):
        with pytest.raises(SaleNotOpenError) as error:
            place_hold(inventory, ["A-1-1"], now=now)
        assert "started" in str(error.value)
        with pytest.raises(SaleNotOpenError):
            inventory.check_open(now)

    assert new_events(inventory) == []
    assert inventory.has_started(T0) and not inventory.has_started(T0 - timedelta(seconds=1))
    booking_id = place_hold(inventory, ["A-1-1"], now=T0 - timedelta(seconds=1))
    assert inventory.claim_of(booking_id) is not None


def test_an_inventory_that_does_not_know_the_start_is_told_it():
    """Inventories created before they recorded the show's start: the caller passes it."""
    inventory = an_inventory()  # no start recorded
    late = T0 + timedelta(minutes=1)

    customer_id = uuid4()

    def hold_at(now: datetime) -> None:
        inventory.hold(uuid4(), customer_id, ["A-1-1"], {}, HOLD_UNTIL, now=now, show_starts_at=T0)

    assert not inventory.has_started(late)  # unknown start
    assert inventory.has_started(late, show_starts_at=T0)
    with pytest.raises(SaleNotOpenError):
        hold_at(late)
    hold_at(T0 - timedelta(minutes=1))
    assert inventory.tickets_of(customer_id) == 1


def test_opening_or_closing_twice_records_one_event_each():
    inventory = an_inventory(on_sale=False)

    inventory.open_sale()
    inventory.open_sale()
    inventory.close_sale()
    inventory.close_sale()

    assert event_names(new_events(inventory)) == ["Created", "SaleOpened", "SaleClosed"]


# --- holding ---


def test_holding_free_seats_records_seats_held_with_the_expiry():
    inventory = an_inventory()
    new_events(inventory)
    booking_id, customer_id = uuid4(), uuid4()

    inventory.hold(booking_id, customer_id, ["A-1-1", "A-1-2"], {"GA": 2}, until=HOLD_UNTIL)

    [held] = new_events(inventory)
    assert type(held).__qualname__ == "SeatInventory.SeatsHeld"
    assert held.booking_id == booking_id
    assert held.customer_id == customer_id
    assert held.seats == ["A-1-1", "A-1-2"]
    assert held.general == {"GA": 2}
    assert held.until == HOLD_UNTIL
    assert not inventory.is_free("A-1-1")
    assert inventory.claim_of(booking_id) == Claim(
        customer_id.hex, ["A-1-1", "A-1-2"], {"GA": 2}, HOLD_UNTIL, sold=False
    )


def test_a_held_seat_cannot_be_held_by_another_booking():
    inventory = an_inventory()
    place_hold(inventory, ["A-1-2", "A-1-4"])
    new_events(inventory)

    with pytest.raises(SeatsUnavailableError) as error:
        place_hold(inventory, ["A-1-1", "A-1-2", "A-1-3", "A-1-4"])

    assert error.value.seats == ["A-1-2", "A-1-4"]
    assert inventory.is_free("A-1-1")
    assert new_events(inventory) == []


def test_a_sold_seat_cannot_be_held_by_another_booking():
    inventory = an_inventory()
    sold = place_hold(inventory, ["A-1-1"])
    inventory.sell(sold)

    with pytest.raises(SeatsUnavailableError) as error:
        place_hold(inventory, ["A-1-1"])

    assert error.value.seats == ["A-1-1"]


def test_a_booking_holds_only_once_per_show():
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1"])

    with pytest.raises(SeatsUnavailableError):
        inventory.hold(booking_id, uuid4(), ["A-1-2"], {}, until=HOLD_UNTIL)


def test_general_admission_never_exceeds_its_capacity():
    inventory = an_inventory([general("GA", 12)])
    place_hold(inventory, [], {"GA": 10})

    with pytest.raises(CapacityExceededError) as error:
        place_hold(inventory, [], {"GA": 3})

    assert (error.value.section, error.value.requested, error.value.available) == ("GA", 3, 2)
    place_hold(inventory, [], {"GA": 2})
    assert inventory.general["GA"].taken == 12
    assert inventory.free_count() == 0


@pytest.mark.parametrize(
    ("seats", "ga", "requested"),
    [
        pytest.param(0, 0, 0, id="nothing"),
        pytest.param(11, 0, 11, id="eleven seats"),
        pytest.param(0, 11, 11, id="eleven GA tickets"),
        pytest.param(5, 6, 11, id="five seats and six GA tickets"),
    ],
)
def test_a_booking_holds_one_to_ten_tickets(seats, ga, requested):
    inventory = an_inventory([seated("A", {"1": 20}), general("GA", 50)])
    wanted = [f"A-1-{n}" for n in range(1, seats + 1)]

    with pytest.raises(TicketLimitError) as error:
        place_hold(inventory, wanted, {"GA": ga} if ga else {})

    assert (error.value.requested, error.value.limit) == (requested, MAX_TICKETS_PER_BOOKING)


def test_ten_tickets_mixing_seats_and_general_admission_can_be_held():
    inventory = an_inventory([seated("A", {"1": 20}), general("GA", 50)])

    booking_id = place_hold(inventory, [f"A-1-{n}" for n in range(1, 6)], {"GA": 5})

    assert inventory.claim_of(booking_id) is not None


@pytest.mark.parametrize("ga", [0, -1])
def test_a_general_admission_line_needs_at_least_one_ticket(ga):
    inventory = an_inventory()

    with pytest.raises(TicketLimitError):
        place_hold(inventory, ["A-1-1", "A-1-2"], {"GA": ga})


def test_unknown_seats_are_named():
    inventory = an_inventory()

    with pytest.raises(UnknownSeatsError) as error:
        place_hold(inventory, ["A-1-1", "Z-9-9", "A-1-99"])

    assert error.value.seats == ["Z-9-9", "A-1-99"]


@pytest.mark.parametrize("section", ["BALCONY", "A"])
def test_general_admission_in_an_unknown_or_seated_section_is_refused(section):
    inventory = an_inventory()

    with pytest.raises(UnknownSectionError) as error:
        place_hold(inventory, [], {section: 1})

    assert error.value.section == section


def test_the_same_seat_twice_in_one_request_is_refused():
    inventory = an_inventory()

    with pytest.raises(UnknownSeatsError) as error:
        place_hold(inventory, ["A-1-1", "A-1-2", "A-1-1"])

    assert error.value.seats == ["A-1-1"]
    assert inventory.is_free("A-1-1")


# --- fair share: the cap per customer ---


def an_inventory_capped(
    cap: int = DEFAULT_TICKETS_PER_CUSTOMER, starts_at: datetime | None = None
) -> SeatInventory:
    """On sale; A: three rows of ten seats, GA: twenty tickets; `cap` tickets per customer."""
    inventory = SeatInventory(
        inventory_id=uuid4(),
        show_id=uuid4(),
        currency="EUR",
        price_tiers=price_tiers(),
        sections=a_seat_map(),
        starts_at=starts_at,
        max_tickets_per_customer=cap,
    )
    inventory.open_sale()
    return inventory


def test_by_default_a_customer_holds_at_most_ten_tickets_of_a_show_across_bookings():
    """Given a customer's hold of ten tickets (as events, replayed);
    when the customer holds one more;
    then the hold is refused with nothing left to hold, and nothing is recorded."""
    inventory = an_inventory()
    customer_id = uuid4()
    place_hold(inventory, ["A-1-1", "A-1-2", "A-1-3", "A-1-4"], {"GA": 6}, customer_id=customer_id)
    inventory = replay(new_events(inventory))

    with pytest.raises(CustomerTicketLimitError) as error:
        place_hold(inventory, [], {"GA": 1}, customer_id=customer_id)

    assert (error.value.limit, error.value.already, error.value.requested) == (10, 10, 1)
    assert error.value.remaining == 0
    assert new_events(inventory) == []
    assert inventory.tickets_of(customer_id) == 10


def test_a_show_s_own_cap_counts_tickets_across_bookings_and_tells_what_is_left():
    inventory = an_inventory_capped(cap=4)
    customer_id = uuid4()
    place_hold(inventory, ["A-1-1", "A-1-2", "A-1-3"], customer_id=customer_id)

    with pytest.raises(CustomerTicketLimitError) as error:
        place_hold(inventory, [], {"GA": 2}, customer_id=customer_id)

    assert (error.value.limit, error.value.remaining) == (4, 1)
    place_hold(inventory, [], {"GA": 1}, customer_id=customer_id)
    assert inventory.tickets_of(customer_id) == 4


def test_the_cap_per_customer_is_not_the_size_of_one_booking():
    """Eleven tickets in one booking break the booking's limit (422), not the customer's."""
    inventory = an_inventory_capped(cap=50)

    with pytest.raises(TicketLimitError):
        place_hold(inventory, ["A-1-1"], {"GA": 10})


def test_an_operator_ceiling_lower_than_the_show_s_cap_applies():
    inventory = an_inventory()
    customer_id = uuid4()
    place_hold(inventory, ["A-1-1", "A-1-2", "A-1-3", "A-1-4"], customer_id=customer_id)

    with pytest.raises(CustomerTicketLimitError) as error:
        place_hold(inventory, [], {"GA": 3}, customer_id=customer_id, customer_limit=6)

    assert (error.value.limit, error.value.remaining) == (6, 2)
    place_hold(inventory, [], {"GA": 2}, customer_id=customer_id, customer_limit=6)


def test_the_cap_does_not_count_other_customers():
    inventory = an_inventory_capped(cap=6)
    place_hold(inventory, ["A-1-1", "A-1-2", "A-1-3", "A-1-4"])

    booking_id = place_hold(inventory, [], {"GA": 6})

    assert inventory.claim_of(booking_id) is not None


@pytest.mark.parametrize("reason", ["hold expired", "cancelled by the customer", "refunded"])
def test_sold_tickets_count_towards_the_cap_and_released_ones_are_given_back(reason):
    inventory = an_inventory_capped(cap=4)
    customer_id = uuid4()
    sold = place_hold(inventory, ["A-1-1", "A-1-2"], customer_id=customer_id)
    inventory.sell(sold)
    released = place_hold(inventory, ["A-1-3", "A-1-4"], customer_id=customer_id)

    with pytest.raises(CustomerTicketLimitError):
        place_hold(inventory, [], {"GA": 1}, customer_id=customer_id)
    inventory.release(released, reason=reason, at=T0)
    with pytest.raises(CustomerTicketLimitError):
        place_hold(inventory, [], {"GA": 3}, customer_id=customer_id)
    place_hold(inventory, [], {"GA": 2}, customer_id=customer_id)
    assert inventory.tickets_of(customer_id) == 4


def test_releasing_everything_gives_the_whole_allowance_back():
    inventory = an_inventory()
    customer_id = uuid4()
    bought = place_hold(inventory, ["A-1-1", "A-1-2"], {"GA": 8}, customer_id=customer_id)
    inventory.sell(bought)

    inventory.release(bought, reason="refunded")

    assert inventory.tickets_of(customer_id) == 0
    assert customer_id.hex not in inventory.customer_tickets  # snapshots stay small
    place_hold(inventory, [], {"GA": 10}, customer_id=customer_id)


def test_holds_decided_one_after_another_in_one_batch_never_pass_the_cap():
    """A batch decides every command against the same inventory before one commit: each hold
    sees the ones decided before it, so fifty requests of ten tickets by one customer get ten."""
    inventory = an_inventory_capped(cap=10, starts_at=T0 + timedelta(days=1))
    customer_id = uuid4()
    refused = 0
    for _ in range(50):
        try:
            seats, general = inventory.choose_best_available(10)
            place_hold(inventory, seats, general, customer_id=customer_id)
        except CustomerTicketLimitError as error:
            assert error.remaining == 0
            refused += 1

    assert refused == 49
    assert inventory.tickets_of(customer_id) == 10
    assert inventory.free_count() == 30 + 20 - 10
    rebuilt = replay(new_events(inventory))
    assert (rebuilt.claims, rebuilt.customer_tickets) == (
        inventory.claims,
        inventory.customer_tickets,
    )


def test_an_inventory_created_before_caps_existed_has_the_default_cap():
    """Given a Created event stored as version 1 (no start, no cap), read back and replayed;
    when a customer of ten tickets holds one more; then it is refused at the default cap."""
    inventory = an_inventory()
    customer_id = uuid4()
    place_hold(inventory, [], {"GA": 10}, customer_id=customer_id)
    mapper = BoxOffice(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    stored = [mapper.to_stored_event(e) for e in new_events(inventory)]
    state = json.loads(stored[0].state)
    assert state["class_version"] == 2
    del state["class_version"], state["starts_at"], state["max_tickets_per_customer"]
    stored[0] = StoredEvent(
        stored[0].originator_id,
        stored[0].originator_version,
        stored[0].topic,
        json.dumps(state).encode(),
    )

    rebuilt: SeatInventory = replay([mapper.to_domain_event(s) for s in stored])

    assert (rebuilt.customer_limit, rebuilt.starts_at) == (DEFAULT_TICKETS_PER_CUSTOMER, None)
    with pytest.raises(CustomerTicketLimitError):
        place_hold(rebuilt, ["A-1-1"], customer_id=customer_id)


# --- holds that lapse and are taken again ---

THREE_AN_HOUR = LapsedHoldLimit(times=3, window=timedelta(hours=1))


def lapse_holds(inventory: SeatInventory, customer_id: UUID, expiries: list[int]) -> None:
    """Given holds by the customer on A-1-1 that ran out after these minutes past T0."""
    for minutes in expiries:
        until = T0 + timedelta(minutes=minutes)
        booking_id = place_hold(inventory, ["A-1-1"], customer_id=customer_id, until=until)
        inventory.release(booking_id, reason="expired", at=until)


def hold_again(inventory: SeatInventory, customer_id: UUID, minutes: int, seat: str) -> UUID:
    """When the customer holds `seat` this many minutes past T0, three lapses an hour allowed."""
    now = T0 + timedelta(minutes=minutes)
    return place_hold(
        inventory, [seat], customer_id=customer_id, lapsed_limit=THREE_AN_HOUR, now=now
    )


def test_a_customer_whose_holds_lapsed_too_often_waits_for_the_oldest_to_leave_the_window():
    inventory = an_inventory()
    customer_id = uuid4()
    lapse_holds(inventory, customer_id, [10, 20, 30])
    new_events(inventory)

    with pytest.raises(LapsedHoldLimitError) as error:
        hold_again(inventory, customer_id, 30, "A-1-1")

    assert error.value.lapses == 3
    assert error.value.retry_after_seconds == 40 * 60  # the lapse at 10 leaves at 70
    assert new_events(inventory) == []
    hold_again(inventory, customer_id, 70, "A-1-1")


def test_lapses_of_other_customers_and_lapses_outside_the_window_do_not_count():
    inventory = an_inventory()
    customer_id = uuid4()
    lapse_holds(inventory, customer_id, [-90, 10, 20])  # the first ran out long ago
    lapse_holds(inventory, uuid4(), [10, 20, 30])

    hold_again(inventory, customer_id, 30, "A-1-1")


def test_a_cancelled_hold_counts_from_its_cancellation_not_from_its_expiry():
    inventory = an_inventory()
    customer_id = uuid4()
    until = T0 + timedelta(minutes=45)
    cancelled = place_hold(inventory, ["A-1-1"], customer_id=customer_id, until=until)
    inventory.release(cancelled, reason="cancelled", at=T0 + timedelta(minutes=5))
    lapse_holds(inventory, customer_id, [10, 20])

    with pytest.raises(LapsedHoldLimitError) as error:
        hold_again(inventory, customer_id, 30, "A-1-1")

    assert error.value.retry_after_seconds == 35 * 60  # at 65, an hour after the cancellation


def test_bought_tickets_released_later_are_not_lapsed_holds():
    inventory = an_inventory()
    customer_id = uuid4()
    for seat in ["A-1-1", "A-1-2", "A-1-3"]:
        sold = place_hold(inventory, [seat], customer_id=customer_id)
        inventory.sell(sold)
        inventory.release(sold, reason="refunded")

    hold_again(inventory, customer_id, 0, "A-1-4")


def test_lapses_are_known_again_when_the_inventory_is_replayed():
    inventory = an_inventory()
    customer_id = uuid4()
    lapse_holds(inventory, customer_id, [10, 20, 30])

    rebuilt = replay(new_events(inventory))

    with pytest.raises(LapsedHoldLimitError):
        hold_again(rebuilt, customer_id, 0, "A-1-2")


# --- expiry ---


def test_expired_holds_lists_only_unsold_holds_past_their_expiry():
    inventory = an_inventory()
    due = place_hold(inventory, ["A-1-1"], until=T0 + timedelta(minutes=5))
    due_now = place_hold(inventory, ["A-1-2"], until=T0 + timedelta(minutes=10))
    not_yet = place_hold(inventory, ["A-1-3"], until=T0 + timedelta(minutes=15))
    sold = place_hold(inventory, ["A-1-4"], until=T0 + timedelta(minutes=5))
    inventory.sell(sold)
    released = place_hold(inventory, ["A-1-5"], until=T0 + timedelta(minutes=5))
    inventory.release(released, reason="cancelled")

    expired = inventory.expired_holds(T0 + timedelta(minutes=10))

    assert sorted(expired) == sorted([due, due_now])
    assert not_yet not in expired
    assert inventory.expired_holds(T0) == []


# --- selling ---


def test_selling_a_held_claim_records_seats_sold():
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1"], {"GA": 1})
    new_events(inventory)

    inventory.sell(booking_id)

    [sold] = new_events(inventory)
    assert type(sold).__qualname__ == "SeatInventory.SeatsSold"
    assert sold.booking_id == booking_id
    claim = inventory.claim_of(booking_id)
    assert claim is not None
    assert claim.sold is True
    assert not inventory.is_free("A-1-1")


def test_selling_without_a_hold_is_refused():
    inventory = an_inventory()
    never_held = uuid4()

    with pytest.raises(HoldNotFoundError) as error:
        inventory.sell(never_held)

    assert error.value.booking_id == never_held


def test_selling_twice_is_refused():
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1"])
    inventory.sell(booking_id)

    with pytest.raises(HoldNotFoundError):
        inventory.sell(booking_id)


def test_selling_a_released_hold_is_refused():
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1"])
    inventory.release(booking_id, reason="expired")

    with pytest.raises(HoldNotFoundError):
        inventory.sell(booking_id)


# --- releasing ---


def test_releasing_a_hold_frees_its_seats_and_tickets_for_others():
    inventory = an_inventory([seated("A", {"1": 4}), general("GA", 3)])
    booking_id = place_hold(inventory, ["A-1-1", "A-1-2"], {"GA": 3})
    new_events(inventory)

    inventory.release(booking_id, reason="hold expired")

    [released] = new_events(inventory)
    assert type(released).__qualname__ == "SeatInventory.SeatsReleased"
    assert (released.booking_id, released.reason) == (booking_id, "hold expired")
    assert inventory.claim_of(booking_id) is None
    assert inventory.is_free("A-1-1")
    assert inventory.free_count() == 4 + 3
    other = place_hold(inventory, ["A-1-1", "A-1-2"], {"GA": 3})
    assert inventory.claim_of(other) is not None


def test_releasing_a_sold_claim_frees_its_seats_for_resale():
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1"])
    inventory.sell(booking_id)

    inventory.release(booking_id, reason="refunded")

    assert inventory.is_free("A-1-1")
    place_hold(inventory, ["A-1-1"])


def test_releasing_what_is_not_held_is_refused():
    inventory = an_inventory()
    booking_id = place_hold(inventory, ["A-1-1"])
    inventory.release(booking_id, reason="cancelled")

    with pytest.raises(HoldNotFoundError):
        inventory.release(booking_id, reason="cancelled")
    with pytest.raises(HoldNotFoundError):
        inventory.release(uuid4(), reason="cancelled")


# --- events ---


def test_every_change_is_recorded_as_an_event():
    inventory = an_inventory(on_sale=False)
    inventory.open_sale()
    first = place_hold(inventory, ["A-1-1"])
    inventory.sell(first)
    second = place_hold(inventory, [], {"GA": 2})
    inventory.release(second, reason="payment failed")
    inventory.close_sale()

    events = new_events(inventory)

    assert event_names(events) == [
        "Created",
        "SaleOpened",
        "SeatsHeld",
        "SeatsSold",
        "SeatsHeld",
        "SeatsReleased",
        "SaleClosed",
    ]
    assert [e.originator_version for e in events] == list(range(1, 8))
    assert all(e.originator_id == inventory.id for e in events)


def test_replaying_the_events_rebuilds_the_same_inventory():
    inventory = an_inventory()
    customer_id = uuid4()
    sold = place_hold(inventory, ["A-1-1", "A-1-2"], {"GA": 2}, customer_id=customer_id)
    inventory.sell(sold)
    released = place_hold(inventory, ["A-2-5"], customer_id=customer_id)
    inventory.release(released, reason="expired")
    place_hold(inventory, ["A-2-5", "A-2-6"], until=T0)

    rebuilt = replay(new_events(inventory))

    assert isinstance(rebuilt, SeatInventory)
    assert state_of(rebuilt) == state_of(inventory)
    assert rebuilt.expired_holds(T0) == inventory.expired_holds(T0)
