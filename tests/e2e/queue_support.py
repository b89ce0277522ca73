"""What the waiting-room tests share: "the room" (an app on the session's servers deciding with a
clock the test sets, `bootstrap(clock=)`), shows with a waiting room, and the fan's requests.

Shows are scheduled (and their sale opened by hand, so holds go through) with the session's app;
the catalog it projects is what the room reads the show's rate and window from."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_shell.container import Container
from http_shell.problems import PROBLEM_JSON, TYPE_BASE
from tests.e2e.conftest import Api, served, settings_for_tests
from tests.e2e.saga_support import wait_until
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints

RATE = 60  # one fan a second


class SetClock:
    """The room's clock: the real time until a test sets it."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


@contextmanager
def room_app(
    clock: SetClock, endpoints: StackEndpoints, data_dir: Path, **overrides: Any
) -> Iterator[Api]:
    """An app on the session's servers with `clock` and these settings, served; the clock is
    back to the real time after it."""
    shifted = bootstrap(settings_for_tests(endpoints, data_dir, **overrides), clock=clock)
    try:
        with served(shifted) as client:
            yield client
    finally:
        clock.at = None
        shifted.close()


def clock_fixtures() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A test module's `clock` (module-scoped) and an autouse fixture setting it back to the
    real time after each test: `clock, real_time_after = clock_fixtures()`."""

    @pytest.fixture(scope="module", name="clock")
    def clock() -> SetClock:
        return SetClock()

    @pytest.fixture(autouse=True, name="real_time_after")
    def real_time_after(clock: SetClock) -> Iterator[None]:
        yield
        clock.at = None

    return clock, real_time_after


def room_fixture(directory: str, **overrides: Any) -> Callable[..., Any]:
    """A test module's `room` fixture: `room_app` in `stack_dir / directory` with `overrides`.
    It asks for `api` and `container` so the session app (whose read models keep the catalog
    the room reads) is running first."""

    @pytest.fixture(scope="module", name="room")
    def room(
        api: Api, container: Container, endpoints: StackEndpoints, stack_dir: Path, clock: SetClock
    ) -> Iterator[Api]:
        with room_app(clock, endpoints, stack_dir / directory, **overrides) as client:
            yield client

    return room


def queued_show(api: Api, rate: int | None = RATE, opens_in: timedelta = timedelta(days=1)) -> str:
    """A show whose sale opens in `opens_in` with a waiting room of `rate`, its sale opened by
    hand (so holds are decided on their merits), once the catalog shows its rate."""
    opens = (datetime.now(UTC) + opens_in).replace(microsecond=0)
    body: dict[str, Any] = {
        "title": "The on-sale",
        "category": "rock",
        "venue": "Arena",
        "starts_at": (opens + timedelta(days=2)).isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [{"code": "GA", "kind": "general", "tier": "STD", "capacity": 1000}],
        "sale_opens_at": opens.isoformat(),
        "queue_admits_per_minute": rate,
    }
    show_id = api.publish_show(body)
    wait_until(
        lambda: api.http.get(f"/shows/{show_id}").json().get("queue_admits_per_minute") == rate,
        30,
        "the catalog to show the waiting room",
    )
    return show_id


def opens_at(api: Api, show_id: str) -> datetime:
    return datetime.fromisoformat(api.http.get(f"/shows/{show_id}").json()["sale_opens_at"])


def auth(fan: dict[str, str]) -> dict[str, str]:
    return {"Authorization": fan["Authorization"]}


def join(room: Api, show_id: str, fan: dict[str, str]) -> httpx.Response:
    return room.http.post(f"/shows/{show_id}/queue", headers=auth(fan))


def status_of(room: Api, show_id: str, fan: dict[str, str], token: str) -> dict[str, Any]:
    r = room.http.get(f"/shows/{show_id}/queue/{token}", headers=auth(fan))
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def book(
    room: Api, fan: dict[str, str], show_id: str, admission: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"show_id": show_id, "quantity": 1}
    if admission is not None:
        body["admission"] = admission
    return room.http.post("/bookings", json=body, headers=auth(fan))


def assert_queue_required(r: httpx.Response, says: str) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["type"] == TYPE_BASE + "queue-required"
    assert says in r.json()["detail"], r.json()["detail"]
