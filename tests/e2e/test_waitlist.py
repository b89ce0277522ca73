"""The waiting list over HTTP on the real servers: fans of a sold-out show join, and when seats
come back (a hold expires, a card is declined, a booking is cancelled) the waitlist-offers
worker holds them for the fans in the order they joined; a fan pays the offer like any hold, an
offer that lapses moves on to the next fan, and the public never takes a seat a fan waits for.

Two systems of their own (fresh databases): one with its workers running (offers lapse after 9
s there), one without, where the test settles the list itself (`settle_waiting_list`, what the
worker does) so that the moments between a seat coming back and its offer can be looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from audit.verify import verify
from audit.waitlist_invariants import WAITLIST_RULES
from domain.booking import CANCELLED, CONFIRMED, HELD, Booking
from domain.ids import waiting_list_id_for
from domain.waitlist import (
    FULFILLED,
    LAPSED,
    LEFT,
    OFFERED,
    WAITING,
    WaitingEntry,
    WaitingList,
    offer_booking_id_for,
)
from tests.e2e.conftest import Api
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    SagaSystem,
    book,
    in_days,
    show_starting,
    start_system,
    wait_until,
)
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

OFFER_MINUTES = 0.15  # 9 s: fan 2 lets an offer lapse in the story


@pytest.fixture(scope="module")
def busy(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    """Its workers running (short offers); its short-hold API holds for 6 s."""
    system = start_system(endpoints, stack_dir / "waitlist-busy", short_hold_minutes=0.1)
    try:
        system.settings = system.settings.model_copy(
            update={"waitlist_offer_minutes": OFFER_MINUTES}
        )
        system.start_workers()
        yield system
    finally:
        system.close()


@pytest.fixture(scope="module")
def quiet(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    """No workers: nothing settles the lists but the tests."""
    system = start_system(endpoints, stack_dir / "waitlist-quiet")
    yield system
    system.close()


def join(api: Api, fan: dict[str, str], show_id: str, **body: Any) -> Any:
    return api.http.post(
        f"/shows/{show_id}/waitlist",
        json={"quantity": 1, **body},
        headers={"Authorization": fan["Authorization"]},
    )


def joined(api: Api, fan: dict[str, str], show_id: str, **body: Any) -> dict[str, Any]:
    r = join(api, fan, show_id, **body)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


def hold(api: Api, who: dict[str, str], show_id: str, **request: Any) -> Any:
    return api.http.post(
        "/bookings",
        json={"show_id": show_id, **request},
        headers={"Authorization": who["Authorization"]},
    )


def waiting_list(system: SagaSystem, show_id: str) -> WaitingList:
    found: WaitingList = system.store.get(waiting_list_id_for(UUID(show_id)), WaitingList)
    return found


def entry_of(system: SagaSystem, show_id: str, entry: dict[str, Any]) -> WaitingEntry:
    found = waiting_list(system, show_id).entry(UUID(entry["entry_id"]))
    assert found is not None
    return found


def wait_for_entry(
    system: SagaSystem, show_id: str, entry: dict[str, Any], status: str, timeout: float = 30
) -> WaitingEntry:
    def reached() -> WaitingEntry | None:
        found = entry_of(system, show_id, entry)
        return found if found.status == status else None

    return wait_until(reached, timeout, f"entry {entry['entry_id']} to be {status}")


def offer_of(system: SagaSystem, entry: dict[str, Any]) -> Booking:
    return system.booking(offer_booking_id_for(UUID(entry["entry_id"])))


def settle(system: SagaSystem, show_id: str) -> Any:
    assert system.container.waitlist is not None
    return system.container.waitlist.settle_waiting_list(UUID(show_id)).result(30)


def assert_audit_passes(system: SagaSystem) -> None:
    report = verify(system.store)
    waitlist_findings = [str(v) for v in report.violations if v.rule in WAITLIST_RULES]
    assert waitlist_findings == []
    assert report.ok, [str(v) for v in report.violations]


def test_freed_seats_go_to_the_waiting_fans_in_order_and_a_lapsed_offer_moves_on(
    busy: SagaSystem,
):
    """Given a sold-out show of 2 seats (one hold about to expire, one about to be declined)
    and 3 fans waiting for 1 ticket each; when the card is declined and the hold expires; then
    fan 1 and fan 2 are offered the seats in that order, the public is refused every time it
    tries a freed seat, fan 1 pays (OfferAccepted), fan 2 lets the offer lapse and fan 3 gets
    its seat; the audit passes."""
    api = busy.api
    show_id = show_starting(api, in_days(30), seats=2)
    fans = [api.new_customer() for _ in range(3)]
    expiring, declining, public = (api.new_customer() for _ in range(3))
    declined = book(api, declining, show_id, seats=["A-1-2"])
    book(busy.short_hold_api, expiring, show_id, seats=["A-1-1"])  # expires in 6 s
    entries = [joined(api, fan, show_id) for fan in fans]
    assert [e["position"] for e in entries] == [1, 2, 3]
    again = join(api, fans[0], show_id)
    assert again.status_code == 409 and again.json()["type"].endswith("/already-waiting")

    r = api.http.post(
        f"/bookings/{declined['booking_id']}/pay",
        json={"payment_method": DECLINED},
        headers={"Authorization": declining["Authorization"]},
    )
    assert r.status_code == 402, r.text

    first = wait_for_entry(busy, show_id, entries[0], OFFERED)
    offer = offer_of(busy, entries[0])
    assert (offer.offer, offer.status, offer.seats) == (True, HELD, ["A-1-2"])
    assert str(offer.customer_id) == fans[0]["account_id"]
    assert first.booking == offer.id.hex
    assert entry_of(busy, show_id, entries[1]).status == WAITING
    # The public tries the other seat until it is offered to fan 2: held by its first buyer,
    # then held back for the fans, then held for fan 2; never the public's.
    refusals: list[str] = []

    def offered_to_fan_2() -> bool:
        r = hold(api, public, show_id, seats=["A-1-1"])
        assert r.status_code == 409, r.text
        refusals.append(r.json()["type"])
        return entry_of(busy, show_id, entries[1]).status == OFFERED

    wait_until(offered_to_fan_2, 30, "fan 2's offer")
    assert set(refusals) == {"https://ticketblitz.dev/problems/seats-unavailable"}
    assert offer_of(busy, entries[1]).seats == ["A-1-1"]
    assert entry_of(busy, show_id, entries[2]).status == WAITING

    def paid() -> Any:
        r = api.http.post(
            f"/bookings/{offer.id}/pay",
            json={"payment_method": VISA},
            headers={"Authorization": fans[0]["Authorization"]},
        )
        return None if r.status_code == 503 else r  # `payment-not-ready`: the intent comes

    r = wait_until(paid, 30, "fan 1's payment")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == CONFIRMED
    wait_for_entry(busy, show_id, entries[0], FULFILLED)

    lapsed = wait_for_entry(busy, show_id, entries[1], LAPSED)
    assert lapsed.reason == "hold expired"
    third = wait_for_entry(busy, show_id, entries[2], OFFERED)
    offer_3 = offer_of(busy, entries[2])
    assert (offer_3.seats, str(offer_3.customer_id)) == (["A-1-1"], fans[2]["account_id"])
    assert third.booking == offer_3.id.hex
    assert_audit_passes(busy)


def sold_out_show(system: SagaSystem, seats: int) -> tuple[str, list[dict[str, Any]]]:
    """A show of one row of `seats`, each seat held by a booking of its own."""
    api = system.api
    show_id = show_starting(api, in_days(30), seats=seats)
    holders = []
    for n in range(1, seats + 1):
        buyer = api.new_customer()
        holders.append({**book(api, buyer, show_id, seats=[f"A-1-{n}"]), "who": buyer})
    return show_id, holders


def cancel(api: Api, held: dict[str, Any]) -> None:
    r = api.http.post(
        f"/bookings/{held['booking_id']}/cancel",
        headers={"Authorization": held["who"]["Authorization"]},
    )
    assert r.status_code == 202, r.text


def test_the_public_cannot_take_a_freed_seat_while_a_fan_waits_for_it(quiet: SagaSystem):
    """Given a sold-out show of 2 seats and a fan waiting for 1; when a booking is cancelled;
    then the public's holds of the freed seat (chosen, or best available) are refused with 409
    `seats-unavailable` (held back for the waiting list) until the list is settled: the fan is
    offered it; a seat nobody waits for is the public's again."""
    api = quiet.api
    show_id, holders = sold_out_show(quiet, 2)
    fan, public = api.new_customer(), api.new_customer()
    entry = joined(api, fan, show_id)
    cancel(api, holders[0])

    chosen = hold(api, public, show_id, seats=["A-1-1"])
    anywhere = hold(api, public, show_id, quantity=1)

    for refused in (chosen, anywhere):
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("/seats-unavailable")
        assert "waiting list" in refused.json()["detail"]
    settled = settle(quiet, show_id)
    assert list(settled.offered) == [UUID(entry["entry_id"])]
    offer = offer_of(quiet, entry)
    assert (offer.offer, offer.status, offer.seats) == (True, HELD, ["A-1-1"])
    cancel(api, holders[1])  # nobody else waits: the public may have it
    r = hold(api, public, show_id, seats=["A-1-2"])
    assert r.status_code == 201, r.text
    assert settle(quiet, show_id).offered == {}
    assert_audit_passes(quiet)


def test_an_entry_the_freed_seats_cannot_serve_is_passed_over_for_a_later_one(
    quiet: SagaSystem,
):
    """Given fans waiting for 2 tickets, then for 1; when one seat comes back; then the second
    fan is offered it and the first keeps its place (first in line); when two more come back,
    the first fan is offered both."""
    api = quiet.api
    show_id, holders = sold_out_show(quiet, 3)
    needs_two = joined(api, api.new_customer(), show_id, quantity=2)
    needs_one = joined(api, api.new_customer(), show_id, quantity=1)
    cancel(api, holders[0])

    settle(quiet, show_id)

    assert entry_of(quiet, show_id, needs_one).status == OFFERED
    assert offer_of(quiet, needs_one).seats == ["A-1-1"]
    assert entry_of(quiet, show_id, needs_two).status == WAITING
    assert waiting_list(quiet, show_id).position_of(UUID(needs_two["entry_id"])) == 1
    cancel(api, holders[1])
    cancel(api, holders[2])
    settle(quiet, show_id)
    assert offer_of(quiet, needs_two).seats == ["A-1-2", "A-1-3"]
    assert_audit_passes(quiet)


def test_joining_is_refused_while_the_tickets_can_be_booked(quiet: SagaSystem):
    api = quiet.api
    show_id = show_starting(api, in_days(30), seats=4)
    fan = api.new_customer()

    free = join(api, fan, show_id, quantity=2)
    too_many = join(api, fan, show_id, quantity=5)  # 4 seats: nobody can book 5

    assert free.status_code == 409, free.text
    assert free.json()["type"].endswith("/tickets-available")
    assert too_many.status_code == 201, too_many.text
    for body, kind in (
        ({"quantity": 11}, "validation-error"),
        ({"quantity": "2"}, "validation-error"),
        ({"quantity": 1, "section": "Z"}, "unknown-section"),
        ({"quantity": 1, "extra": True}, "validation-error"),
    ):
        r = join(api, api.new_customer(), show_id, **body)
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith(f"/{kind}")
    closed = show_starting(api, in_days(30), seats=1)
    r = api.http.post(f"/shows/{closed}/close-sale", headers=api.admin())
    assert r.status_code == 200, r.text
    r = join(api, fan, closed)
    assert r.status_code == 409 and r.json()["type"].endswith("/sale-not-open"), r.text


def test_a_fan_leaves_the_list_and_an_offered_fan_leaving_gives_the_seats_on(
    quiet: SagaSystem,
):
    """Only the entry's customer (or an admin) removes it; leaving twice is a 409; a fan who
    left may join again (at the end). A fan leaving while offered cancels the offer's booking
    and frees its seat, which the next fan is offered."""
    api = quiet.api
    show_id, holders = sold_out_show(quiet, 1)
    fans = [api.new_customer() for _ in range(3)]
    entries = [joined(api, fan, show_id) for fan in fans]

    stranger = api.http.delete(
        f"/waitlist/{entries[2]['entry_id']}", headers={"Authorization": fans[0]["Authorization"]}
    )
    left = api.http.delete(
        f"/waitlist/{entries[2]['entry_id']}", headers={"Authorization": fans[2]["Authorization"]}
    )
    twice = api.http.delete(
        f"/waitlist/{entries[2]['entry_id']}", headers={"Authorization": fans[2]["Authorization"]}
    )
    unknown = api.http.delete(f"/waitlist/{UUID(int=7)}", headers=api.admin())

    assert stranger.status_code == 403, stranger.text
    assert left.status_code == 204, left.text
    assert twice.status_code == 409 and twice.json()["type"].endswith("/illegal-transition")
    assert unknown.status_code == 404, unknown.text
    assert entry_of(quiet, show_id, entries[2]).status == LEFT
    back = joined(api, fans[2], show_id)
    assert back["position"] == 3

    cancel(api, holders[0])
    settle(quiet, show_id)
    offer = offer_of(quiet, entries[0])
    assert offer.status == HELD
    r = api.http.delete(
        f"/waitlist/{entries[0]['entry_id']}", headers={"Authorization": fans[0]["Authorization"]}
    )
    assert r.status_code == 204, r.text
    assert offer_of(quiet, entries[0]).status == CANCELLED
    settle(quiet, show_id)
    assert entry_of(quiet, show_id, entries[1]).status == OFFERED
    assert offer_of(quiet, entries[1]).seats == ["A-1-1"]
    assert_audit_passes(quiet)
