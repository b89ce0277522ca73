"""Finding 3, "one customer can hold a whole show": 50 x `POST /bookings {"quantity": 10}` by one
unpaid customer held all 500 seats of a show. Now each customer holds and buys at most the
show's cap (10 unless the show sets its own), decided by the show's writer: sequential and
concurrent requests, through one app or two, never pass it; the allowance comes back when a
hold is cancelled or expires."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.booking import EXPIRED
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from http_shell.problems import PROBLEM_JSON, TYPE_BASE
from tests.e2e.conftest import Api
from tests.e2e.saga_support import SagaSystem, book, in_days, running_system, show_starting
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

LIMIT_REACHED = TYPE_BASE + "ticket-limit-reached"


def inventory_of(container: Container, show_id: str) -> SeatInventory:
    return container.store.get(inventory_id_for(UUID(show_id)), SeatInventory)


def show_of(api: Api, seats: int, **body: Any) -> str:
    """A show on sale in 30 days: section A, rows of 50 seats; `body` overrides the request."""
    return show_starting(api, in_days(30), seats=50, rows=seats // 50, **body)


def hold(api: Api, customer: dict[str, str], show_id: str, quantity: int) -> httpx.Response:
    return api.http.post(
        "/bookings",
        json={"show_id": show_id, "quantity": quantity},
        headers={"Authorization": customer["Authorization"]},
    )


def assert_limit_reached(r: httpx.Response, limit: int, remaining: int) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    problem = r.json()
    assert problem["type"] == LIMIT_REACHED, problem
    assert (problem["limit"], problem["remaining"]) == (limit, remaining), problem


def test_fifty_holds_of_ten_by_one_customer_get_ten_tickets_and_leave_the_rest_on_sale(
    api: Api, container: Container
):
    show_id = show_of(api, seats=500)
    scalper = api.new_customer()

    answers = [hold(api, scalper, show_id, 10) for _ in range(50)]

    assert answers[0].status_code == 201, answers[0].text
    for refused in answers[1:]:
        assert_limit_reached(refused, limit=10, remaining=0)
    inventory = inventory_of(container, show_id)
    assert inventory.free_count() == 490
    assert len(inventory.claims) == 1
    assert inventory.tickets_of(UUID(scalper["account_id"])) == 10
    # The seats are there for everybody else.
    for _ in range(3):
        assert hold(api, api.new_customer(), show_id, 10).status_code == 201
    assert inventory_of(container, show_id).free_count() == 460


def test_the_answer_tells_the_allowance_left_and_a_smaller_request_still_fits(api: Api):
    show_id = show_of(api, seats=100)
    fan = api.new_customer()
    assert hold(api, fan, show_id, 7).status_code == 201

    assert_limit_reached(hold(api, fan, show_id, 4), limit=10, remaining=3)

    assert hold(api, fan, show_id, 3).status_code == 201
    assert_limit_reached(hold(api, fan, show_id, 1), limit=10, remaining=0)


def test_a_show_sets_its_own_cap_per_customer(api: Api, container: Container):
    show_id = show_of(api, seats=100, max_tickets_per_customer=4)
    fan = api.new_customer()

    assert hold(api, fan, show_id, 4).status_code == 201
    assert_limit_reached(hold(api, fan, show_id, 1), limit=4, remaining=0)

    assert inventory_of(container, show_id).tickets_of(UUID(fan["account_id"])) == 4


@pytest.mark.parametrize("cap", [0, -1, 1001, "5", 2.5, True, None])
def test_a_cap_per_customer_must_be_a_whole_number_from_1_to_1000(
    api: Api, container: Container, cap: Any
):
    before = container.store.head_position()
    request = {
        "title": "Bad cap",
        "category": "rock",
        "venue": "Arena",
        "starts_at": in_days(30).isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [{"code": "GA", "kind": "general", "tier": "STD", "capacity": 100}],
        "max_tickets_per_customer": cap,
    }

    r = api.http.post("/shows", json=request, headers=api.admin())

    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert container.store.head_position() == before  # nothing written


def test_more_than_ten_in_one_booking_is_still_the_per_booking_limit(api: Api):
    show_id = show_of(api, seats=100, max_tickets_per_customer=50)

    r = hold(api, api.new_customer(), show_id, 11)

    assert r.status_code == 422, r.text  # the request's own size (validation), not the share


def test_thirty_concurrent_holds_by_one_customer_never_pass_the_cap(api: Api, container: Container):
    show_id = show_of(api, seats=500)
    fan = api.new_customer()

    statuses = asyncio.run(hold_concurrently([api.base_url], fan, show_id, quantity=3, times=30))

    assert sorted(statuses) == [201] * 3 + [409] * 27  # 3 x 3 = 9; a fourth would make 12
    inventory = inventory_of(container, show_id)
    assert inventory.tickets_of(UUID(fan["account_id"])) == 9
    assert inventory.free_count() == 491


async def hold_concurrently(
    base_urls: list[str], customer: dict[str, str], show_id: str, quantity: int, times: int
) -> list[int]:
    """`times` holds sent at once, spread over the given APIs; their status codes."""
    headers = {"Authorization": customer["Authorization"]}
    body = {"show_id": show_id, "quantity": quantity}
    async with httpx.AsyncClient(timeout=60) as http:

        async def one(i: int) -> int:
            r = await http.post(
                f"{base_urls[i % len(base_urls)]}/bookings", json=body, headers=headers
            )
            assert r.status_code in (201, 409), r.text
            if r.status_code == 409:
                assert r.json()["type"] == LIMIT_REACHED, r.text
            return r.status_code

        return list(await asyncio.gather(*(one(i) for i in range(times))))


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    """Two app servers (each its own show writers) on one database, with the workers: the
    normal one and one whose holds last 3 s."""
    with running_system(endpoints, stack_dir / "fair-share") as started:
        yield started


def test_concurrent_holds_through_two_apps_never_pass_the_cap(system: SagaSystem):
    """Two processes' writers of the same show: the show lock and the version check make them
    decide one after the other, so the cap holds across them too."""
    api = system.api
    show_id = show_of(api, seats=500)
    fan = api.new_customer()
    urls = [api.base_url, system.short_hold_api.base_url]

    statuses = asyncio.run(hold_concurrently(urls, fan, show_id, quantity=2, times=30))

    assert sorted(statuses) == [201] * 5 + [409] * 25
    inventory = system.inventory(show_id)
    assert inventory.tickets_of(UUID(fan["account_id"])) == 10
    assert inventory.free_count() == 490


def test_a_cancelled_hold_gives_its_tickets_back(system: SagaSystem):
    api = system.api
    show_id = show_of(api, seats=100)
    fan = api.new_customer()
    held = book(api, fan, show_id, quantity=10)
    assert_limit_reached(hold(api, fan, show_id, 1), limit=10, remaining=0)

    r = api.http.post(
        f"/bookings/{held['booking_id']}/cancel", headers={"Authorization": fan["Authorization"]}
    )
    assert r.status_code == 202, r.text

    assert hold(api, fan, show_id, 10).status_code == 201
    assert system.inventory(show_id).tickets_of(UUID(fan["account_id"])) == 10


def test_an_expired_hold_gives_its_tickets_back(system: SagaSystem):
    short = system.short_hold_api  # holds of 3 s, released by the workers at their expiry
    show_id = show_of(system.api, seats=100)
    fan = short.new_customer()
    held = book(short, fan, show_id, quantity=10)
    assert_limit_reached(hold(short, fan, show_id, 1), limit=10, remaining=0)

    system.wait_for_status(held["booking_id"], {EXPIRED}, timeout=30)

    assert hold(system.api, fan, show_id, 10).status_code == 201
    assert system.inventory(show_id).tickets_of(UUID(fan["account_id"])) == 10
