"""The audit's waiting-list rules, against logs forged to break them: an entry offered twice, an
offer skipping an earlier entry the same seats could serve, a public hold of a seat owed to a
waiting entry. A log the domain wrote the way a settlement does passes."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from audit.invariants import CHECKS, Invariants
from audit.waitlist_invariants import (
    OFFER_SKIPPED_ENTRY,
    OFFERED_TWICE,
    PUBLIC_HOLD_OWED,
    install,
)
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from domain.waitlist import WaitingList, offer_booking_id_for
from tests.unit.factories import HOLD_UNTIL, T0, new_events, price_tiers, seated

SECTIONS = {"A": "seated"}

install(CHECKS)


class Show:
    """A show's inventory (a row of 4 seats, all held) and waiting list, logged in order."""

    def __init__(self) -> None:
        show_id = uuid4()
        self.inventory = SeatInventory(
            inventory_id=inventory_id_for(show_id),
            show_id=show_id,
            currency="EUR",
            price_tiers=price_tiers(),
            sections=[seated("A", {"1": 4})],
        )
        self.inventory.open_sale()
        self.holds: dict[int, UUID] = {}
        for n in range(1, 5):
            self.holds[n] = uuid4()
            self.hold(self.holds[n], [f"A-1-{n}"])
        self.waiting_list = WaitingList(show_id=show_id)
        self.log: list[Any] = []
        self.flush()

    def hold(self, booking_id: UUID, seats: list[str], customer: UUID | None = None) -> None:
        self.inventory.hold(booking_id, customer or uuid4(), seats, {}, HOLD_UNTIL, now=T0)

    def join(self, quantity: int = 1) -> UUID:
        entry = uuid4()
        self.waiting_list.join(entry, uuid4(), quantity, None, T0, SECTIONS)
        self.flush()
        return entry

    def release(self, *seats: int) -> None:
        for n in seats:
            self.inventory.release(self.holds[n], "expired", T0)
        self.flush()

    def offer(self, entry: UUID, seats: list[str]) -> None:
        booking = offer_booking_id_for(entry)
        self.hold(booking, seats)
        self.flush()
        self.waiting_list.make_offer(entry, booking, seats, {}, HOLD_UNTIL)
        self.flush()

    def flush(self) -> None:
        for aggregate in (self.inventory, getattr(self, "waiting_list", None)):
            if aggregate is not None and hasattr(self, "log"):
                self.log.extend(new_events(aggregate))

    def audited(self) -> Invariants:
        invariants = Invariants()
        for position, event in enumerate(self.log, start=1):
            invariants.apply(position, event)
        return invariants


def rules(invariants: Invariants) -> list[str]:
    return [v.rule for v in invariants.violations]


def test_offers_in_order_and_public_holds_of_seats_nobody_waits_for_pass():
    """Given 2 fans waiting; when 3 seats come back, the fans are offered one each in order
    and the third seat goes to the public; then no violation."""
    show = Show()
    first, second = show.join(), show.join()
    show.release(1, 2, 3)
    show.offer(first, ["A-1-1"])
    show.offer(second, ["A-1-2"])
    show.hold(uuid4(), ["A-1-3"])
    show.flush()

    assert rules(show.audited()) == []


def test_an_offer_skipping_an_earlier_entry_the_seats_could_serve_is_reported():
    show = Show()
    show.join()
    second = show.join()
    show.release(1)

    show.offer(second, ["A-1-1"])

    assert rules(show.audited()) == [OFFER_SKIPPED_ENTRY]


def test_an_earlier_entry_the_seats_cannot_serve_may_be_passed_over():
    show = Show()
    needs_two, needs_one = show.join(2), show.join(1)
    show.release(1)

    show.offer(needs_one, ["A-1-1"])

    assert rules(show.audited()) == []
    assert needs_two != needs_one


def test_a_public_hold_of_a_seat_a_waiting_fan_could_take_is_reported():
    show = Show()
    show.join()
    show.release(4)

    show.hold(uuid4(), ["A-1-4"])
    show.flush()

    assert rules(show.audited()) == [PUBLIC_HOLD_OWED]


def test_a_second_offer_to_one_entry_is_reported():
    show = Show()
    entry = show.join()
    show.release(1, 2)
    show.offer(entry, ["A-1-1"])
    show.hold(uuid4(), ["A-1-2"])  # nobody waits any more: the public may
    show.flush()
    # Forged: the list offers the same entry seats again.
    show.waiting_list.trigger_event(
        WaitingList.OfferMade,  # type: ignore[attr-defined]
        entry_id=entry,
        booking_id=uuid4(),
        seats=["A-1-2"],
        general={},
        expires_at=HOLD_UNTIL,
    )
    show.flush()

    assert rules(show.audited()) == [OFFERED_TWICE]
