"""Finding 5, "shows in the past sell": a show starting in 2020 was created, opened and sold;
after a show's start new holds were accepted, and paid bookings could then be cancelled and
refunded by nobody. Now a show must start in the future when it is scheduled, nothing is held
once it started (even while its sale is open), and an admin can still cancel a paid booking
after the start, which the saga refunds.

"Later" is an app on the same database whose clock runs two days ahead (`bootstrap(clock=)`):
what it decides is what the real app decides two days from now. One test also waits for a
show's real start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from domain.booking import CONFIRMED, REFUNDED
from http_shell.container import Container
from http_shell.problems import PROBLEM_JSON, TYPE_BASE
from infra.clock import utc_now
from tests.e2e.conftest import Api, served
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    in_days,
    refunds_of,
    running_system,
    show_starting,
    stripe_client,
    wait_until,
)
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

AHEAD = timedelta(days=2)


def show_body(starts_at: str) -> dict[str, object]:
    return {
        "title": "Yesterday's news",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": starts_at,
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [{"code": "GA", "kind": "general", "tier": "STD", "capacity": 100}],
    }


@pytest.mark.parametrize(
    "starts_at",
    [
        "2020-06-01T20:00:00+00:00",
        (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    ],
    ids=["in 2020", "a minute ago"],
)
def test_a_show_starting_in_the_past_cannot_be_scheduled(
    api: Api, container: Container, starts_at: str
):
    before = container.store.head_position()

    r = api.http.post("/shows", json=show_body(starts_at), headers=api.admin())

    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["type"] == TYPE_BASE + "invalid-show"
    assert "future" in r.json()["detail"]
    assert container.store.head_position() == before  # no show, no inventory


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "started-shows") as started:
        yield started


@pytest.fixture(scope="module")
def later(system: SagaSystem) -> Iterator[Api]:
    """The command API on the system's database, deciding with a clock two days ahead."""
    with ExitStack() as exits:
        ahead = bootstrap(system.settings, clock=lambda: utc_now() + AHEAD)
        exits.callback(ahead.close)
        yield exits.enter_context(served(ahead))


def auth(customer: dict[str, str]) -> dict[str, str]:
    return {"Authorization": customer["Authorization"]}


def assert_sale_not_open(r: httpx.Response) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["type"] == TYPE_BASE + "sale-not-open", r.text
    assert "started" in r.json()["detail"]


def test_nothing_is_held_once_the_show_started_though_its_sale_is_open(
    system: SagaSystem, later: Api
):
    """Given a show on sale that starts tomorrow; when customers hold seats two days from now
    (by seat, by quantity, in a section); then every hold is refused and nothing is held."""
    show_id = show_starting(system.api, in_days(1), seats=10)
    fan = later.new_customer()

    for request in ({"seats": ["A-1-1"]}, {"quantity": 2}, {"section": "A", "quantity": 1}):
        r = later.http.post("/bookings", json={"show_id": show_id, **request}, headers=auth(fan))
        assert_sale_not_open(r)

    inventory = system.inventory(show_id)
    assert inventory.on_sale  # still open: the start alone stops the holds
    assert inventory.claims == {} and inventory.free_count() == 10
    # Today, before the start, the same hold is taken.
    held = book(system.api, fan, show_id, seats=["A-1-1"])
    assert system.inventory(show_id).claim_of(UUID(held["booking_id"])) is not None


def test_a_show_whose_start_passes_while_on_sale_takes_no_more_holds(system: SagaSystem):
    """The real clock: a show starting in a few seconds takes a hold, then its start passes."""
    starts_at = datetime.now(UTC) + timedelta(seconds=8)
    show_id = show_starting(system.api, starts_at, seats=10)
    fan = system.api.new_customer()
    book(system.api, fan, show_id, seats=["A-1-1"])

    wait_until(lambda: datetime.now(UTC) > starts_at, 30, "the show's start")
    r = system.api.http.post(
        "/bookings", json={"show_id": show_id, "quantity": 1}, headers=auth(fan)
    )

    assert_sale_not_open(r)
    assert len(system.inventory(show_id).claims) == 1


def test_after_the_start_only_an_admin_cancels_a_paid_booking_and_it_is_refunded(
    system: SagaSystem, later: Api
):
    show_id = show_starting(system.api, in_days(1), seats=10)
    fan = system.api.new_customer()
    held = book(system.api, fan, show_id, seats=["A-1-1", "A-1-2"], payment_method=VISA)
    booking_id = held["booking_id"]
    paid = system.wait_for_status(booking_id, {CONFIRMED}, timeout=15)

    # Two days later, the show has started: the customer cannot cancel...
    r = later.http.post(f"/bookings/{booking_id}/cancel", headers=auth(fan))
    assert r.status_code == 409, r.text
    assert r.json()["type"] == TYPE_BASE + "illegal-transition"
    assert system.booking(booking_id).status == CONFIRMED
    assert system.inventory(show_id).claim_of(paid.id) is not None

    # ...an admin can, and the saga refunds the payment in full.
    r = later.http.post(f"/bookings/{booking_id}/cancel", headers=later.admin())
    assert r.status_code == 202, r.text

    refunded = system.wait_for_status(booking_id, {REFUNDED}, timeout=20)
    assert refunded.refunded_cents == refunded.paid_cents == 9000
    client = stripe_client(system.endpoints)
    assert [r.amount for r in refunds_of(client, paid.payment_intent_id)] == [9000]
    assert system.inventory(show_id).claim_of(paid.id) is None
