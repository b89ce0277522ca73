"""With Redis unreachable the command API still books exactly once and limits rates locally."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from tests.e2e.conftest import Api, served, settings_for_tests
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def no_redis(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[tuple[Api, Container]]:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = settings_for_tests(
        endpoints, stack_dir / "no-redis", redis_url=dead, rate_limit_booking_per_minute=5
    )
    container = bootstrap(settings)
    with served(container) as api:
        yield api, container
    container.close()


def test_keyed_retries_book_once_without_redis(no_redis: tuple[Api, Container]):
    api, container = no_redis
    show = api.new_show()
    customer = api.new_customer()
    headers = {**customer, "Idempotency-Key": uuid4().hex}
    body = {"show_id": show, "seats": ["A-1-1", "A-1-2"]}
    first = api.http.post("/bookings", json=body, headers=headers)
    retry = api.http.post("/bookings", json=body, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json()["booking_id"] == first.json()["booking_id"]
    inventory = container.store.get(inventory_id_for(UUID(show)), SeatInventory)
    assert list(inventory.claims) == [UUID(first.json()["booking_id"]).hex]


def test_rate_limits_fall_back_to_this_process(no_redis: tuple[Api, Container]):
    api, _ = no_redis
    show = api.new_show()
    customer = api.new_customer()
    answers = [
        api.http.post("/bookings", json={"show_id": show, "quantity": 1}, headers=customer)
        for _ in range(7)
    ]
    codes = [a.status_code for a in answers]
    assert codes[:5] == [201] * 5
    assert codes[5:] == [429, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].headers["content-type"].startswith("application/problem+json")
