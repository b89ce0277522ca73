"""PostgreSQL stops for a few seconds while fans book and read.

Given the command and query APIs (one running app, its projection runners included) on a
PostgreSQL of their own, and fans who book one ticket at a time (retrying with the same
Idempotency-Key until they get a 201) while reading their bookings,
when PostgreSQL stops and, some seconds later, starts again,
then every answer while it is down is a 503 problem+json with Retry-After (no 500, no stack
trace, no hang, no error logged), the same app answers again once PostgreSQL is back (nobody
restarts it), and no event is lost or half-written: every booking answered 201 is in the event
store with its seats held, nothing else is held, and the read models show every booking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.booking import Booking
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from tests.e2e.conftest import Api, served, settings_for_tests
from tests.e2e.saga_support import wait_until
from tests.faults.support import assert_unavailable, own_stack
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import EmbeddedStack, StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FANS = 8
PAUSE = 0.1  # between one fan's requests
ANSWER_WITHIN = 30.0  # seconds: an answer later than that is a hang (the client gives up)
COMMAND_TIMEOUT = 2.0  # seconds a booking may wait for its commit before a 503
BOOKING_OK, QUERY_OK = 201, 200
STORM_WITHIN = 120.0  # seconds for the whole storm: outage, recovery, a booking by each fan


@dataclass
class System:
    stack: EmbeddedStack
    container: Container
    api: Api


@pytest.fixture
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[System]:
    """Both APIs and the projection runners in one process (as `ticketblitz up` runs them),
    on a PostgreSQL of their own."""
    with own_stack(postgres=True) as stack:
        settings = settings_for_tests(
            endpoints,
            stack_dir / "pg-down",
            database_url=stack.endpoints.database_url,
            command_timeout_seconds=COMMAND_TIMEOUT,
        )
        container = bootstrap(settings)
        assert container.read_side is not None
        container.read_side.start_runners()
        try:
            with served(container) as api:
                yield System(stack, container, api)
        finally:
            container.close()


@dataclass
class Outage:
    """What the clients saw (every answer, by API) and whether the outage is over."""

    over: bool = False
    answers: dict[str, list[httpx.Response]] = field(
        default_factory=lambda: {"command": [], "query": []}
    )
    back_at: float = 0.0  # when PostgreSQL answered again
    first_booking_after: float | None = None  # seconds from then to the first 201

    def saw(self, api: str, response: httpx.Response) -> None:
        self.answers[api].append(response)

    def count(self, api: str, status: int) -> int:
        return sum(1 for r in self.answers[api] if r.status_code == status)


async def fan(http: httpx.AsyncClient, auth: str, show_id: str, outage: Outage) -> list[Any]:
    """Book one ticket after another, each until it is answered 201 (a 503 is retried with
    the same key); stop after the first 201 once the outage is over. Returns the 201 bodies."""
    held: list[dict[str, Any]] = []
    n = 0
    while not (outage.over and any(h["answered_after_outage"] for h in held)):
        key = f"booking-{n}"  # one customer's keys
        n += 1
        while True:
            r = await http.post(
                "/bookings",
                json={"show_id": show_id, "quantity": 1},
                headers={"Authorization": auth, "Idempotency-Key": key},
            )
            outage.saw("command", r)
            if r.status_code == BOOKING_OK:
                held.append({**r.json(), "answered_after_outage": outage.over})
                if outage.over and outage.first_booking_after is None:
                    outage.first_booking_after = time.monotonic() - outage.back_at
                break
            # only a 503 is retried: anything else would be retried in vain until the deadline
            assert r.status_code == 503, r.text
            await asyncio.sleep(PAUSE)
        await asyncio.sleep(PAUSE)
    return held


async def reader(http: httpx.AsyncClient, auth: str, outage: Outage, done: asyncio.Event) -> None:
    """Read my bookings over and over, until the fans are done."""
    while not done.is_set():
        r = await http.get("/me/bookings", params={"limit": 100}, headers={"Authorization": auth})
        outage.saw("query", r)
        await asyncio.sleep(PAUSE)


async def postgres_outage(stack: EmbeddedStack, outage: Outage) -> None:
    """Once bookings flow, stop PostgreSQL until both APIs have answered 503, then start it."""
    await until(lambda: outage.count("command", BOOKING_OK) >= FANS, 60, "bookings before")
    await asyncio.to_thread(stack.stop_server, "postgres")
    before = {name: outage.count(name, 503) for name in outage.answers}
    await until(
        lambda: all(outage.count(name, 503) > n for name, n in before.items()),
        60,
        "503 answers from both APIs",
    )
    await asyncio.to_thread(stack.start_server, "postgres")
    outage.back_at = time.monotonic()
    outage.over = True


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)


async def storm(system: System, show_id: str, fans: list[str], outage: Outage) -> list[list[Any]]:
    """Every fan's 201 answers, fan by fan."""
    async with httpx.AsyncClient(base_url=system.api.base_url, timeout=ANSWER_WITHIN) as http:
        done = asyncio.Event()
        readers = [asyncio.create_task(reader(http, auth, outage, done)) for auth in fans]
        try:
            booked = asyncio.gather(*(fan(http, auth, show_id, outage) for auth in fans))
            try:
                _, held = await asyncio.wait_for(
                    asyncio.gather(postgres_outage(system.stack, outage), booked), STORM_WITHIN
                )
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {STORM_WITHIN} s waiting for every fan to book once after "
                    f"the outage (outage over: {outage.over}; command answers by status: "
                    f"{_by_status(outage.answers['command'])})"
                ) from None
        finally:
            done.set()
            await asyncio.gather(*readers)
    return list(held)


def test_postgres_down_answers_503_and_recovers_without_losing_a_booking(
    system: System, caplog: pytest.LogCaptureFixture
):
    api = system.api
    show_id = api.new_show(rows=40, seats_per_row=25)
    customers = [api.new_customer() for _ in range(FANS)]
    outage = Outage()

    by_fan = asyncio.run(storm(system, show_id, [c["Authorization"] for c in customers], outage))
    held = [h for each in by_fan for h in each]
    print(f"first booking {outage.first_booking_after:.2f} s after PostgreSQL was back")

    # While PostgreSQL was down: 503 problem+json, and nothing else but the normal answers
    assert outage.count("command", 503) and outage.count("query", 503)
    for name, ok in (("command", BOOKING_OK), ("query", QUERY_OK)):
        answers = outage.answers[name]
        statuses = {r.status_code for r in answers}
        print(f"{name} API: {len(answers)} answers, by status {_by_status(answers)}")
        assert statuses == {ok, 503}, statuses
        for r in answers:
            if r.status_code == 503:
                assert_unavailable(r)
    # (an outage is no error of ours: nothing logged a failure with its stack trace)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    # Then every fan booked again once it was back, from the same running app, and the read
    # models, fed by runners that lived through the outage, show every booking
    assert all(any(h["answered_after_outage"] for h in mine) for mine in by_fan)
    last = max(h["position"] for h in held)
    for customer, mine in zip(customers, by_fan, strict=True):
        auth = customer["Authorization"]
        r = wait_until(partial(my_bookings_after, api, auth, last), 30, "the read models")
        assert {b["booking_id"] for b in r.json()["items"]} == {h["booking_id"] for h in mine}

    # And the event store holds exactly the bookings answered 201, each with its hold
    store = system.container.store
    inventory = store.get(inventory_id_for(UUID(show_id)), SeatInventory)
    answered = {UUID(h["booking_id"]): h["seats"] for h in held}
    assert {UUID(b) for b in inventory.claims} == set(answered)
    for booking_id, seats in answered.items():
        assert store.get(booking_id, Booking).seats == seats
        assert inventory.claims[booking_id.hex].seats == seats
    assert len(inventory.holder) == len(answered)


def my_bookings_after(api: Api, auth: str, after: int) -> httpx.Response | None:
    """My bookings as of `after`; None for a 503 (it says to retry: the read side may still be
    finding its connections again), any other answer fails."""
    params = {"limit": 100, "after": after}
    r = api.http.get("/me/bookings", params=params, headers={"Authorization": auth})
    if r.status_code == 503:
        assert_unavailable(r)
        return None
    assert r.status_code == QUERY_OK, r.text
    return r


def _by_status(answers: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for r in answers:
        counts[r.status_code] = counts.get(r.status_code, 0) + 1
    return dict(sorted(counts.items()))
