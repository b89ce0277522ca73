"""WaitingList: fans waiting for a sold-out show, served first come first served, each entry
offered seats at most once; an entry the free seats cannot serve is passed over."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.errors import TicketLimitError, UnknownSectionError
from domain.inventory import SeatInventory
from domain.waitlist import (
    FULFILLED,
    LAPSED,
    LEFT,
    OFFERED,
    WAITING,
    AlreadyWaitingError,
    EntryClosedError,
    FreeCounts,
    WaitingList,
    offer_booking_id_for,
)
from tests.unit.factories import (
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

SECTIONS = {"A": "seated", "B": "seated", "GA": "general"}
OFFER_UNTIL = T0 + timedelta(minutes=30)


def a_list() -> WaitingList:
    waiting_list = WaitingList(show_id=uuid4())
    new_events(waiting_list)
    return waiting_list


def join(
    waiting_list: WaitingList,
    quantity: int = 1,
    section: str | None = None,
    customer: UUID | None = None,
) -> UUID:
    entry_id = uuid4()
    waiting_list.join(entry_id, customer or uuid4(), quantity, section, T0, SECTIONS)
    return entry_id


def sold_out(sections: list[dict[str, Any]]) -> tuple[SeatInventory, dict[str, UUID]]:
    """An inventory whose every seat and GA place is held, one booking per seat / section."""
    inventory = an_inventory(sections)
    holds: dict[str, UUID] = {}
    for row in inventory.rows:
        for seat in row.seats:
            holds[seat] = place_hold(inventory, [seat])
    for code, ga in inventory.general.items():
        if ga.capacity:
            holds[code] = place_hold(inventory, ga={code: ga.capacity})
    return inventory, holds


def offer_all(waiting_list: WaitingList, inventory: SeatInventory) -> list[UUID]:
    """What a settlement does: each servable entry's seats held before the next is tried."""
    offered = []
    for servable in waiting_list.servable_entries(inventory):
        booking_id = offer_booking_id_for(servable.entry_id)
        inventory.hold(
            booking_id, UUID(servable.entry.customer), servable.seats, servable.general, T0
        )
        waiting_list.make_offer(
            servable.entry_id, booking_id, servable.seats, servable.general, OFFER_UNTIL
        )
        offered.append(servable.entry_id)
    return offered


def test_a_fan_joins_at_the_end_of_the_list():
    """Given a list with one entry; when a second fan joins for 2 tickets in section A; then
    EntryJoined records who, how many, where and when, and the entry is second in line."""
    waiting_list = a_list()
    first = join(waiting_list)
    fan = uuid4()

    second = join(waiting_list, 2, "A", customer=fan)

    [_, joined] = new_events(waiting_list)
    assert event_names([joined]) == ["EntryJoined"]
    assert (joined.entry_id, joined.customer_id, joined.quantity, joined.section) == (
        second,
        fan,
        2,
        "A",
    )
    assert joined.joined_at == T0
    assert (waiting_list.position_of(first), waiting_list.position_of(second)) == (1, 2)
    assert waiting_list.active_entry_of(fan) == second


def test_one_entry_per_customer_while_it_is_on_the_list():
    """Given a fan waiting; when they join again; then AlreadyWaitingError names their entry;
    once their entry lapsed they may join again, at the end."""
    waiting_list = a_list()
    fan = uuid4()
    entry = join(waiting_list, customer=fan)

    with pytest.raises(AlreadyWaitingError) as refused:
        join(waiting_list, 3, customer=fan)
    assert refused.value.entry_id == entry

    waiting_list.lapse_offer(entry, "not offered: test")
    again = join(waiting_list, customer=fan)
    assert waiting_list.position_of(again) == 1
    assert waiting_list.position_of(entry) is None


@pytest.mark.parametrize("quantity", [0, 11])
def test_an_entry_asks_for_1_to_10_tickets(quantity: int):
    with pytest.raises(TicketLimitError):
        join(a_list(), quantity)


def test_an_entry_names_a_section_of_the_show():
    waiting_list = a_list()
    with pytest.raises(UnknownSectionError):
        join(waiting_list, 1, "Z")
    assert new_events(waiting_list) == []


def test_freed_seats_go_to_the_first_entries_in_order():
    """Given a sold-out row of 4 and three fans waiting for 1 ticket each; when two seats come
    back; then the first two fans are offered one seat each, the third keeps waiting."""
    inventory, holds = sold_out([seated("A", {"1": 4})])
    waiting_list = a_list()
    fans = [join(waiting_list) for _ in range(3)]
    inventory.release(holds["A-1-2"], "expired", T0)
    inventory.release(holds["A-1-3"], "declined", T0)

    offered = offer_all(waiting_list, inventory)

    assert offered == fans[:2]
    seats = [waiting_list.entries[f.hex] for f in fans]
    assert [e.status for e in seats] == [OFFERED, OFFERED, WAITING]
    assert waiting_list.position_of(fans[2]) == 3  # the offered ones are still on the list
    assert inventory.free_count() == 0


def test_an_entry_the_freed_seats_cannot_serve_is_passed_over_and_keeps_its_place():
    """Given fans waiting for 3 seats in A, then 2 anywhere, then 1 in A; when 2 seats of A
    come back; then the first is passed over (it needs 3), the second gets both, the third
    nothing is left for; the first is still first in line."""
    inventory, holds = sold_out([seated("A", {"1": 4}), general("GA", 2)])
    waiting_list = a_list()
    needs_three = join(waiting_list, 3, "A")
    two_anywhere = join(waiting_list, 2)
    one_in_a = join(waiting_list, 1, "A")
    inventory.release(holds["A-1-1"], "expired", T0)
    inventory.release(holds["A-1-2"], "expired", T0)

    offered = offer_all(waiting_list, inventory)

    assert offered == [two_anywhere]
    assert waiting_list.entries[two_anywhere.hex].booking == offer_booking_id_for(two_anywhere).hex
    assert waiting_list.entries[needs_three.hex].status == WAITING
    assert waiting_list.entries[one_in_a.hex].status == WAITING
    assert waiting_list.position_of(needs_three) == 1


def test_an_entry_for_general_admission_is_served_from_its_section():
    inventory, holds = sold_out([seated("A", {"1": 2}), general("GA", 3)])
    waiting_list = a_list()
    wants_seats = join(waiting_list, 2, "A")
    wants_floor = join(waiting_list, 3, "GA")
    inventory.release(holds["GA"], "expired", T0)

    [servable] = list(waiting_list.servable_entries(inventory))

    assert servable.entry_id == wants_floor
    assert (servable.seats, servable.general) == ([], {"GA": 3})
    assert waiting_list.entries[wants_seats.hex].status == WAITING


def test_an_entry_is_offered_seats_once():
    """Given an entry offered seats; when it is offered again, or after it lapsed; then
    EntryClosedError, nothing recorded: one offer per entry."""
    waiting_list = a_list()
    entry = join(waiting_list)
    booking = offer_booking_id_for(entry)
    waiting_list.make_offer(entry, booking, ["A-1-1"], {}, OFFER_UNTIL)
    new_events(waiting_list)

    with pytest.raises(EntryClosedError):
        waiting_list.make_offer(entry, uuid4(), ["A-1-2"], {}, OFFER_UNTIL)
    waiting_list.lapse_offer(entry, "hold expired")
    with pytest.raises(EntryClosedError):
        waiting_list.make_offer(entry, booking, ["A-1-1"], {}, OFFER_UNTIL)

    [lapsed] = new_events(waiting_list)
    assert event_names([lapsed]) == ["OfferLapsed"]
    assert (lapsed.entry_id, lapsed.booking_id, lapsed.reason) == (entry, booking, "hold expired")
    assert waiting_list.entries[entry.hex].status == LAPSED


def test_an_offer_paid_fulfils_the_entry():
    waiting_list = a_list()
    fan = uuid4()
    entry = join(waiting_list, customer=fan)
    booking = offer_booking_id_for(entry)
    waiting_list.make_offer(entry, booking, ["A-1-1"], {}, OFFER_UNTIL)
    new_events(waiting_list)

    waiting_list.accept_offer(entry)

    [accepted] = new_events(waiting_list)
    assert event_names([accepted]) == ["OfferAccepted"]
    assert (accepted.entry_id, accepted.booking_id) == (entry, booking)
    assert waiting_list.entries[entry.hex].status == FULFILLED
    assert waiting_list.active_entry_of(fan) is None
    with pytest.raises(EntryClosedError):
        waiting_list.lapse_offer(entry, "too late")


def test_leaving_while_offered_answers_the_offer_to_cancel():
    """Given two entries, the first offered seats; when both leave; then the first answers its
    offer's booking (the caller cancels it and frees its seats), the second none; a third
    leave is refused."""
    waiting_list = a_list()
    offered = join(waiting_list)
    waiting = join(waiting_list)
    booking = offer_booking_id_for(offered)
    waiting_list.make_offer(offered, booking, ["A-1-1"], {}, OFFER_UNTIL)
    new_events(waiting_list)

    assert waiting_list.leave(offered, "left the waiting list") == booking
    assert waiting_list.position_of(waiting) == 1
    assert waiting_list.leave(waiting, "left the waiting list") is None

    assert event_names(new_events(waiting_list)) == ["EntryLeft", "EntryLeft"]
    assert waiting_list.entries[offered.hex].status == LEFT
    with pytest.raises(EntryClosedError):
        waiting_list.leave(waiting, "again")


def test_free_seats_are_owed_to_a_waiting_entry_they_can_serve_in_its_scope():
    """Owed: a waiting entry the free tickets can serve, whose section (or any, for one that
    takes any) the hold would take from."""
    inventory, holds = sold_out([seated("A", {"1": 2}), seated("B", {"1": 2}), general("GA", 2)])
    waiting_list = a_list()
    in_a = join(waiting_list, 1, "A")
    inventory.release(holds["B-1-1"], "expired", T0)

    counts = FreeCounts.of(inventory)
    assert waiting_list.owed(counts, {"B"}) is None  # B is free, but nobody waits for B
    inventory.release(holds["A-1-1"], "expired", T0)
    counts = FreeCounts.of(inventory)
    assert waiting_list.owed(counts, {"A"}) == in_a
    assert waiting_list.owed(counts, {"B"}) is None
    assert waiting_list.owed(counts, None) == in_a

    anywhere = join(waiting_list, 2)  # one free seat in A and one in B serve it (scattered)
    assert waiting_list.owed(FreeCounts.of(inventory), {"B"}) == anywhere
    assert waiting_list.owed(FreeCounts.of(inventory), {"GA"}) == anywhere


def test_free_counts_serve_as_best_available_would():
    inventory, holds = sold_out([seated("A", {"1": 3, "2": 3}), general("GA", 4)])
    inventory.release(holds["A-1-1"], "expired", T0)
    inventory.release(holds["A-2-3"], "expired", T0)  # two scattered seats
    counts = FreeCounts.of(inventory)

    assert counts.serves(2, "A") and counts.serves(2, None)
    assert not counts.serves(3, "A") and not counts.serves(1, "GA")
    assert counts.serves(2, None) == bool(inventory.choose_best_available(2, None))
    plus = FreeCounts.of(inventory, ["A-1-2"], {"GA": 4})
    assert plus.serves(3, "A") and plus.serves(4, "GA") and plus.serves(4, None)


def test_a_waiting_list_replays_from_its_events():
    waiting_list = WaitingList(show_id=uuid4())
    first = join(waiting_list, 2, "GA")
    second = join(waiting_list)
    waiting_list.make_offer(first, offer_booking_id_for(first), [], {"GA": 2}, OFFER_UNTIL)
    waiting_list.accept_offer(first)
    waiting_list.leave(second, "left")

    rebuilt = replay(new_events(waiting_list))

    assert state_of(rebuilt) == state_of(waiting_list)


def test_an_offer_that_lapses_is_not_counted_against_the_fans_own_holds():
    inventory = an_inventory([seated("A", {"1": 4})])
    fan, offer, own = uuid4(), uuid4(), uuid4()
    inventory.hold(offer, fan, ["A-1-1"], {}, T0, offer=True)
    inventory.hold(own, fan, ["A-1-2"], {}, T0)
    held = [e for e in new_events(inventory) if type(e).__name__ == "SeatsHeld"]
    assert [e.offer for e in held] == [True, False]

    inventory.release(offer, "offer expired", T0)
    inventory.release(own, "hold expired", T0)

    assert inventory.lapses[fan.hex] == [T0]  # the fan's own hold only
