"""Seat blocks and general-admission capacity over HTTP against the real servers: the
organiser takes seats off sale and puts them back, raises and lowers a GA section's capacity;
the seat map and the show's availability follow; holds, best-available and the audit agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from audit.replay import replay_stream
from audit.verify import verify
from domain.ids import inventory_id_for
from http_shell.container import Container
from tests.e2e.conftest import Api
from tests.e2e.saga_support import show_starting, wait_until

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + kind), body
    return body


def block(api: Api, show: str, who: dict[str, str], seats: list[str], reason: str = "camera"):
    return api.http.post(
        f"/shows/{show}/seats/block", json={"seats": seats, "reason": reason}, headers=who
    )


def unblock(api: Api, show: str, who: dict[str, str], seats: list[str]) -> httpx.Response:
    return api.http.post(f"/shows/{show}/seats/unblock", json={"seats": seats}, headers=who)


def set_capacity(
    api: Api, show: str, who: dict[str, str], capacity: Any, section: str = "GA"
) -> httpx.Response:
    return api.http.put(
        f"/shows/{show}/sections/{section}/capacity", json={"capacity": capacity}, headers=who
    )


def hold(api: Api, customer: dict[str, str], show: str, **request: Any) -> httpx.Response:
    return api.http.post("/bookings", json={"show_id": show, **request}, headers=customer)


def seat_statuses(api: Api, show: str, after: int) -> dict[str, str]:
    r = api.http.get(f"/shows/{show}/seats", params={"after": after})
    assert r.status_code == 200, r.text
    return {
        seat["seat"]: seat["status"]
        for section in r.json()["sections"]
        for row in section["rows"]
        for seat in row["seats"]
    }


def section_of(api: Api, show: str, code: str, after: int) -> dict[str, Any]:
    r = api.http.get(f"/shows/{show}", params={"after": after})
    assert r.status_code == 200, r.text
    [section] = [s for s in r.json()["sections"] if s["code"] == code]
    return dict(section)


def organisers_show(api: Api, organiser: dict[str, str], general: int = 10) -> str:
    """A show the organiser schedules (so manages) and opens: section A (2 rows of 4), GA."""
    body = {
        "title": "Organised night",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 4}]},
            {"code": "GA", "kind": "general", "tier": "STD", "capacity": general},
        ],
    }
    r = api.http.post("/shows", json=body, headers=organiser)
    assert r.status_code == 201, r.text
    show: str = r.json()["show_id"]
    r = api.http.post(f"/shows/{show}/open-sale", headers=organiser)
    assert r.status_code == 200, r.text
    return show


def test_blocked_seats_are_shown_blocked_refused_skipped_and_holdable_once_unblocked(api: Api):
    """Given a show on sale (A: 2 rows of 4); when the admin blocks the centre of the front
    row; then the seat map shows them blocked and the section two fewer available, a hold on
    one is refused naming it, best-available moves to the second row; once unblocked they are
    free again and can be held."""
    admin, customer = api.admin(), api.new_customer()
    show = api.new_show(rows=2, seats_per_row=4)

    r = block(api, show, admin, ["A-1-2", "A-1-3"], "camera position")

    assert r.status_code == 200, r.text
    assert (r.json()["blocked"], r.json()["unchanged"]) == (["A-1-2", "A-1-3"], [])
    position = r.json()["position"]
    statuses = seat_statuses(api, show, position)
    assert (statuses["A-1-2"], statuses["A-1-3"], statuses["A-1-1"]) == (
        "blocked",
        "blocked",
        "free",
    )
    section = section_of(api, show, "A", position)
    assert (section["capacity"], section["available"]) == (8, 6)

    refused = assert_problem(hold(api, customer, show, seats=["A-1-2"]), 409, "seats-unavailable")
    assert refused["seats"] == ["A-1-2"]
    best = hold(api, customer, show, quantity=2)
    assert best.status_code == 201, best.text
    assert best.json()["seats"] == ["A-2-2", "A-2-3"]

    again = block(api, show, admin, ["A-1-2", "A-1-4"], "broken")
    assert (again.json()["blocked"], again.json()["unchanged"]) == (["A-1-4"], ["A-1-2"])
    r = unblock(api, show, admin, ["A-1-2", "A-1-3", "A-1-4", "A-1-1"])
    assert r.status_code == 200, r.text
    assert (r.json()["unblocked"], r.json()["unchanged"]) == (
        ["A-1-2", "A-1-3", "A-1-4"],
        ["A-1-1"],
    )

    statuses = seat_statuses(api, show, r.json()["position"])
    assert [statuses[f"A-1-{n}"] for n in range(1, 5)] == ["free"] * 4
    held = hold(api, customer, show, seats=["A-1-2", "A-1-3"])
    assert held.status_code == 201, held.text
    statuses = seat_statuses(api, show, held.json()["position"])
    assert (statuses["A-1-2"], statuses["A-1-3"]) == ("held", "held")


def test_blocking_a_held_or_sold_seat_is_refused_naming_it_and_blocks_nothing(api: Api):
    admin, customer = api.admin(), api.new_customer()
    show = api.new_show(rows=1, seats_per_row=4)
    held = hold(api, customer, show, seats=["A-1-1"])
    assert held.status_code == 201, held.text

    r = block(api, show, admin, ["A-1-1", "A-1-2"])

    problem = assert_problem(r, 409, "seats-unavailable")
    assert problem["seats"] == ["A-1-1"]
    assert "A-1-1 (held)" in problem["detail"]
    statuses = seat_statuses(api, show, held.json()["position"])
    assert (statuses["A-1-1"], statuses["A-1-2"]) == ("held", "free")
    taken = hold(api, customer, show, seats=["A-1-2"])
    assert taken.status_code == 201, taken.text  # the refused block took nothing off sale


def test_ga_capacity_is_raised_and_lowered_down_to_what_is_taken(api: Api):
    """Given GA of 10 with 3 tickets held; when raised to 15, the show says 15 and 12
    available; lowered to 3: sold out (a hold of one more is refused); lowered to 2: 409
    naming the 3 taken; a seated or unknown section: 422."""
    admin, customer = api.admin(), api.new_customer()
    show = api.new_show(rows=1, seats_per_row=4, general=10)
    held = hold(api, customer, show, section="GA", quantity=3)
    assert held.status_code == 201, held.text

    raised = set_capacity(api, show, admin, 15)

    assert raised.status_code == 200, raised.text
    assert (raised.json()["capacity"], raised.json()["changed"]) == (15, True)
    ga = section_of(api, show, "GA", raised.json()["position"])
    assert (ga["capacity"], ga["held"], ga["available"]) == (15, 3, 12)

    same = set_capacity(api, show, admin, 15)
    assert (same.status_code, same.json()["changed"]) == (200, False)

    lowered = set_capacity(api, show, admin, 3)
    assert lowered.status_code == 200, lowered.text
    ga = section_of(api, show, "GA", lowered.json()["position"])
    assert (ga["capacity"], ga["available"]) == (3, 0)
    assert_problem(
        hold(api, api.new_customer(), show, section="GA", quantity=1), 409, "not-enough-tickets"
    )

    below = assert_problem(set_capacity(api, show, admin, 2), 409, "capacity-below-taken")
    assert (below["section"], below["taken"], below["held"], below["sold"]) == ("GA", 3, 3, 0)
    assert "3 tickets taken" in below["detail"]
    assert_problem(set_capacity(api, show, admin, 5, section="A"), 422, "not-general-admission")
    assert_problem(set_capacity(api, show, admin, 5, section="ZZ"), 422, "unknown-section")
    ga = section_of(api, show, "GA", lowered.json()["position"])
    assert ga["capacity"] == 3  # the refused changes changed nothing


def test_only_the_show_s_organiser_or_an_admin_controls_its_seats(api: Api):
    organiser, other = api.new_account("organizer"), api.new_account("organizer")
    customer = api.new_customer()
    show = organisers_show(api, organiser)

    for who in (customer, other):
        assert_problem(block(api, show, who, ["A-1-1"]), 403, "forbidden")
        assert_problem(unblock(api, show, who, ["A-1-1"]), 403, "forbidden")
        assert_problem(set_capacity(api, show, who, 20), 403, "forbidden")
    assert_problem(api.http.post(f"/shows/{show}/seats/block", json={}), 401, "unauthorized")

    assert block(api, show, organiser, ["A-1-1"]).status_code == 200
    assert unblock(api, show, api.admin(), ["A-1-1"]).status_code == 200
    r = set_capacity(api, show, organiser, 20)
    assert r.status_code == 200, r.text
    assert seat_statuses(api, show, r.json()["position"])["A-1-1"] == "free"
    assert_problem(
        block(api, "00000000-0000-4000-8000-000000000000", api.admin(), ["A-1-1"]),
        404,
        "not-found",
    )


HOSTILE_BLOCKS: dict[str, dict[str, Any]] = {
    "control characters in the reason": {"seats": ["A-1-1"], "reason": "broken\x00\x1b[31m"},
    "a line break in the reason": {"seats": ["A-1-1"], "reason": "broken\nseat"},
    "a bidi override in the reason": {"seats": ["A-1-1"], "reason": "\u202eexe.doc"},
    "an empty reason": {"seats": ["A-1-1"], "reason": ""},
    "a reason of 201 characters": {"seats": ["A-1-1"], "reason": "x" * 201},
    "no reason": {"seats": ["A-1-1"]},
    "no seats": {"seats": [], "reason": "camera"},
    "ten thousand seats": {"seats": [f"A-1-{n}" for n in range(10_000)], "reason": "camera"},
    "a seat twice": {"seats": ["A-1-1", "A-1-2", "A-1-1"], "reason": "camera"},
    "a malformed seat": {"seats": ["A-1-1'; DROP TABLE seats;--"], "reason": "camera"},
    "seats as a string": {"seats": "A-1-1", "reason": "camera"},
    "an unknown field": {"seats": ["A-1-1"], "reason": "camera", "force": True},
}


@pytest.mark.parametrize("body", HOSTILE_BLOCKS.values(), ids=HOSTILE_BLOCKS.keys())
def test_hostile_block_requests_are_refused_and_block_nothing(api: Api, body: dict[str, Any]):
    admin = api.admin()
    show = api.new_show(rows=1, seats_per_row=4)

    r = api.http.post(f"/shows/{show}/seats/block", json=body, headers=admin)

    assert_problem(r, 422, "validation-error")
    assert "\x1b" not in r.text and "\x00" not in r.text  # the input is not echoed raw
    r = unblock(api, show, admin, ["A-1-4"])  # a write after, to read at its position
    assert set(seat_statuses(api, show, r.json()["position"]).values()) == {"free"}


def test_unknown_seats_and_hostile_capacities_are_refused(api: Api):
    admin = api.admin()
    show = api.new_show(rows=1, seats_per_row=4, general=10)

    unknown = assert_problem(block(api, show, admin, ["A-1-1", "A-9-9"]), 422, "unknown-seats")
    assert unknown["seats"] == ["A-9-9"]
    assert_problem(unblock(api, show, admin, ["B-1-1"]), 422, "unknown-seats")
    assert_problem(unblock(api, show, admin, ["A-1-1", "A-1-1"]), 422, "validation-error")
    for capacity in (-1, "20", 20.5, None, 10**12):
        assert_problem(set_capacity(api, show, admin, capacity), 422, "validation-error")
    assert_problem(set_capacity(api, show, admin, 5, section="G A"), 422, "validation-error")
    r = set_capacity(api, show, admin, 200_000)
    assert_problem(r, 422, "invalid-show")  # with the 4 seats: more than a show may sell
    r = unblock(api, show, admin, ["A-1-1"])
    assert set(seat_statuses(api, show, r.json()["position"]).values()) == {"free"}
    assert section_of(api, show, "GA", r.json()["position"])["capacity"] == 10


def test_a_cancelled_or_started_show_s_seats_cannot_change(api: Api):
    admin = api.admin()
    cancelled = api.new_show(rows=1, seats_per_row=4, general=5)
    r = api.http.post(f"/shows/{cancelled}/cancel", json={"reason": "storm"}, headers=admin)
    assert r.status_code == 200, r.text
    starts_at = datetime.now(UTC) + timedelta(seconds=2)
    started = show_starting(api, starts_at, seats=4)
    wait_until(lambda: datetime.now(UTC) > starts_at or None, 30, "the show to start")

    for show in (cancelled, started):
        assert_problem(block(api, show, admin, ["A-1-1"]), 409, "illegal-transition")
        assert_problem(unblock(api, show, admin, ["A-1-1"]), 409, "illegal-transition")
    assert_problem(set_capacity(api, cancelled, admin, 9), 409, "illegal-transition")


def test_a_repriced_tier_is_in_the_seat_map_and_earlier_holds_keep_their_price(api: Api):
    """Given a hold of two STD seats at 45.00; when STD is repriced to 50.00 (PATCH); then the
    seat map's sections say 50.00, a new hold pays it and the earlier booking still 90.00."""
    admin, customer = api.admin(), api.new_customer()
    show = api.new_show(rows=1, seats_per_row=4)
    before = hold(api, customer, show, seats=["A-1-1", "A-1-2"])
    assert before.status_code == 201, before.text

    r = api.http.patch(
        f"/shows/{show}",
        json={"price_tiers": [{"code": "STD", "price_cents": 5000}]},
        headers=admin,
    )

    assert r.status_code == 200, r.text
    seats = api.http.get(f"/shows/{show}/seats", params={"after": r.json()["position"]})
    [section] = seats.json()["sections"]
    assert section["price_cents"] == 5000
    after = hold(api, customer, show, seats=["A-1-3"])
    assert after.json()["amount_cents"] == 5000
    booking = api.http.get(
        f"/bookings/{before.json()['booking_id']}",
        params={"after": after.json()["position"]},
        headers=customer,
    )
    assert booking.json()["amount_cents"] == 2 * 4500


def test_the_log_with_blocks_and_capacity_changes_passes_the_audit(api: Api, container: Container):
    """After blocks, unblocks, capacity changes and holds around them, `audit verify` finds no
    violation, and `audit replay` shows the new events with their fields."""
    admin, customer = api.admin(), api.new_customer()
    show = api.new_show(rows=1, seats_per_row=4, general=10)
    assert block(api, show, admin, ["A-1-1", "A-1-2"], "house seats").status_code == 200
    assert unblock(api, show, admin, ["A-1-2"]).status_code == 200
    assert hold(api, customer, show, seats=["A-1-2"]).status_code == 201
    assert hold(api, customer, show, section="GA", quantity=2).status_code == 201
    assert set_capacity(api, show, admin, 2).status_code == 200
    assert set_capacity(api, show, admin, 12).status_code == 200

    report = verify(container.store, refund_grace=timedelta(minutes=15))

    assert report.violation_count == 0, [str(v) for v in report.violations]
    replayed = replay_stream(container.store, inventory_id_for(UUID(show)))

    def payloads(kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in replayed.events if e.type == f"SeatInventory.{kind}"]

    assert payloads("SeatsBlocked") == [{"seats": ["A-1-1", "A-1-2"], "reason": "house seats"}]
    assert payloads("SeatsUnblocked") == [{"seats": ["A-1-2"]}]
    assert payloads("GeneralCapacityChanged") == [
        {"section": "GA", "capacity": 2},
        {"section": "GA", "capacity": 12},
    ]
