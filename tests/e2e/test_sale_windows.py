"""Sale windows against the real servers: a show's sale opens at `sale_opens_at` and closes at
`sale_closes_at` by itself (process_managers/sale_windows.py, run by the workers), without any
manual open-sale call, and still opens, once, when the workers were down at the opening time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.show import ON_SALE, SALE_CLOSED, SCHEDULED, Show
from tests.e2e.conftest import Api
from tests.e2e.saga_support import (
    SagaSystem,
    in_days,
    running_system,
    show_starting,
    start_system,
    wait_until,
)
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints
from ticketblitz.workers import build_workers

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "sale-windows") as started:
        yield started


def windowed_show(api: Api, opens_in: float, closes_in: float) -> tuple[str, datetime]:
    """A show (starting tomorrow) whose sale opens and closes in that many seconds, never
    opened by hand; its id and its opening time."""
    now = datetime.now(UTC)
    opens_at = now + timedelta(seconds=opens_in)
    closes_at = now + timedelta(seconds=closes_in)
    window = {"sale_opens_at": opens_at.isoformat(), "sale_closes_at": closes_at.isoformat()}
    body: dict[str, Any] = {
        "title": "Windowed night",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": in_days(1).isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [{"code": "GA", "kind": "general", "tier": "STD", "capacity": 10}],
        **window,
    }
    return api.publish_show(body, open_sale=False), opens_at


def hold(api: Api, customer: dict[str, str], show_id: str) -> httpx.Response:
    return api.http.post(
        "/bookings",
        json={"show_id": show_id, "quantity": 1},
        headers={"Authorization": customer["Authorization"]},
    )


def assert_sale_not_open(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"].endswith("/sale-not-open")


def show_in(system: SagaSystem, show_id: str, status: str) -> Show | None:
    show: Show = system.store.get(UUID(show_id), Show)
    return show if show.status == status else None


def test_the_sale_opens_and_closes_by_itself(system: SagaSystem):
    api = system.api
    customer = api.new_customer()
    show_id, _ = windowed_show(api, opens_in=3, closes_in=6)

    assert_sale_not_open(hold(api, customer, show_id))

    wait_until(lambda: show_in(system, show_id, ON_SALE), 30, "the sale to open by itself")
    r = hold(api, customer, show_id)
    assert r.status_code == 201, r.text

    closed = wait_until(
        lambda: show_in(system, show_id, SALE_CLOSED), 30, "the sale to close by itself"
    )
    assert_sale_not_open(hold(api, customer, show_id))
    assert closed.version == 3  # Scheduled, SaleOpened, SaleClosed: each window task once


def test_a_show_without_a_window_is_still_opened_by_hand(system: SagaSystem):
    show_id = show_starting(system.api, in_days(2))  # opened by hand (open-sale)

    r = hold(system.api, system.api.new_customer(), show_id)

    assert r.status_code == 201, r.text


def test_an_impossible_window_is_refused(system: SagaSystem):
    starts_at = in_days(1)
    body = {
        "title": "Backwards",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": starts_at.isoformat(),
        "sale_opens_at": (starts_at - timedelta(hours=1)).isoformat(),
        "sale_closes_at": (starts_at - timedelta(hours=2)).isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [{"code": "GA", "kind": "general", "tier": "STD", "capacity": 5}],
    }

    r = system.api.http.post("/shows", json=body, headers=system.api.admin())

    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith("/invalid-show")


def armed_tasks(system: SagaSystem, show_id: str) -> set[str]:
    with system.store.connection() as conn:
        rows = conn.execute(
            "SELECT action FROM sale_window_tasks WHERE show_id = %s", (UUID(show_id),)
        ).fetchall()
    return {action for (action,) in rows}


def test_a_sale_opens_once_when_the_workers_were_down_at_its_opening_time(
    endpoints: StackEndpoints, stack_dir: Path
):
    system = start_system(endpoints, stack_dir / "sale-windows-restart")
    try:
        show_id, opens_at = windowed_show(system.api, opens_in=10, closes_in=3600)
        # The workers arm the window's tasks, then stop before the opening time.
        container = bootstrap(system.settings)
        workers = build_workers(container).start()
        try:
            wait_until(lambda: armed_tasks(system, show_id) == {"open", "close"}, 30, "the tasks")
        finally:
            workers.stop()
            container.close()
        wait_until(lambda: datetime.now(UTC) > opens_at, 30, "the opening time to pass")
        assert show_in(system, show_id, SCHEDULED)  # nobody opened it meanwhile

        system.start_workers()

        wait_until(lambda: show_in(system, show_id, ON_SALE), 30, "the sale to open late")
        wait_until(lambda: armed_tasks(system, show_id) == {"close"}, 30, "the open task done")
        opened = show_in(system, show_id, ON_SALE)
        assert opened is not None and opened.version == 2  # Scheduled, SaleOpened: once
        r = hold(system.api, system.api.new_customer(), show_id)
        assert r.status_code == 201, r.text
    finally:
        system.close()
