"""A hot show sold by two write API processes at once: 48 clients, spread over both, fight
over the 100 seats of one show. Each process serializes the show's commands in memory, so
only the cross-process show lock and the inventory's version keep them from selling a seat
twice; the event store, the read model and the answers must all agree that none was."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.booking import Booking
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from tests.conftest import write_api_env
from tests.e2e.conftest import Api
from tests.e2e.saga_support import wait_until
from tests.faults.support import seeded_random
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "ticketblitz")
CLIENTS = 48
ROWS, SEATS_PER_ROW = 4, 25  # 100 seats; the clients want up to 8 each: 384
TICKETS_WANTED = 8  # below the default cap of tickets per customer and show
ATTEMPTS = 40  # per client: a bound, never reached before the show sells out
LOST = {"seats-unavailable", "not-enough-tickets"}


@dataclass
class WriteApi:
    """`ticketblitz serve --api write` in a process of its own, on the session's servers."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, container: Container) -> None:
        env = write_api_env(container.settings)
        argv = [CLI, "serve", "--api", "write", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"{self.base_url} exited:\n{self.log_tail()}"
        try:
            return httpx.get(self.base_url + "/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def writers(container: Container, stack_dir: Path) -> Iterator[list[WriteApi]]:
    started = [WriteApi(free_port(), stack_dir / f"two-writers-{n}.log") for n in range(2)]
    try:
        for each in started:
            each.start(container)
        for each in started:
            wait_until(each.healthy, 60, f"the write API on {each.base_url} to be healthy")
        yield started
    finally:
        for each in started:
            each.stop()


@dataclass
class Answer:
    writer: int  # which process answered
    asked: dict[str, Any]
    status: int
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def problem(self) -> str:
        return str(self.body.get("type", "")).rsplit("/", 1)[-1]


async def fan(
    writer: int, base_url: str, auth: str, show_id: str, rng: random.Random
) -> list[Answer]:
    """Ask for 1-2 adjacent seats at random (after a refusal, for the best one available)
    until holding TICKETS_WANTED tickets or the show is sold out."""
    answers: list[Answer] = []
    tickets = 0
    headers = {"Authorization": auth}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
        for attempt in range(ATTEMPTS):
            if tickets >= TICKETS_WANTED:
                return answers
            refused = bool(answers) and answers[-1].status != 201
            if refused and answers[-1].problem == "not-enough-tickets":
                return answers  # sold out
            if refused or attempt % 3 == 2:
                asked: dict[str, Any] = {"show_id": show_id, "quantity": 1}
            else:
                row, first = rng.randint(1, ROWS), rng.randint(1, SEATS_PER_ROW - 1)
                seats = [f"A-{row}-{s}" for s in range(first, first + rng.randint(1, 2))]
                asked = {"show_id": show_id, "seats": seats}
            r = await http.post("/api/v1/bookings", json=asked)
            body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
            answers.append(Answer(writer, asked, r.status_code, body))
            if r.status_code == 201:
                tickets += len(body["seats"])
    return answers


async def on_sale(writers: list[WriteApi], auths: list[str], show_id: str, seed: int):
    return await asyncio.gather(
        *(
            fan(i % 2, writers[i % 2].base_url, auth, show_id, random.Random(seed + i))
            for i, auth in enumerate(auths)
        )
    )


def seat_statuses(api: Api, show_id: str, after: int) -> dict[str, str] | None:
    r = api.http.get(f"/shows/{show_id}/seats", params={"after": after})
    if r.status_code == 503:  # the read model is not there yet: ask again
        return None
    assert r.status_code == 200, r.text
    return {s["seat"]: s["status"] for row in r.json()["sections"][0]["rows"] for s in row["seats"]}


def test_two_write_processes_never_sell_a_seat_twice(
    api: Api, container: Container, writers: list[WriteApi]
):
    show_id = api.new_show(rows=ROWS, seats_per_row=SEATS_PER_ROW)
    auths = [api.new_customer()["Authorization"] for _ in range(CLIENTS)]
    seed = seeded_random().randrange(1_000_000_000)

    by_fan = asyncio.run(on_sale(writers, auths, show_id, seed))
    answers = [a for mine in by_fan for a in mine]

    # Every answer is a 201 or a 409 saying the seats are gone; each refusal names its own
    odd = [a for a in answers if not (a.status == 201 or (a.status == 409 and a.problem in LOST))]
    assert not odd, [(a.writer, a.asked, a.status, a.body) for a in odd[:5]]
    for a in answers:
        if a.problem == "seats-unavailable":
            assert a.body["seats"] and set(a.body["seats"]) <= set(a.asked.get("seats", ())), a.body
    won = [a for a in answers if a.status == 201]
    assert {a.writer for a in won} == {0, 1}, "both processes must have sold seats"
    assert any(a.problem == "not-enough-tickets" for a in answers), "demand exceeded supply"

    # No seat in two 201s, and every seat of the show sold exactly once
    sold = [seat for a in won for seat in a.body["seats"]]
    assert len(sold) == len(set(sold)) == ROWS * SEATS_PER_ROW
    holder = {seat: UUID(a.body["booking_id"]).hex for a in won for seat in a.body["seats"]}
    assert len({a.body["booking_id"] for a in won}) == len(won)

    # The event store agrees with what the clients were told...
    inventory = container.store.get(inventory_id_for(UUID(show_id)), SeatInventory)
    assert inventory.holder == holder
    assert set(inventory.claims) == {UUID(a.body["booking_id"]).hex for a in won}
    for a in won:
        booking = container.store.get(UUID(a.body["booking_id"]), Booking)
        assert booking.seats == a.body["seats"]
        assert inventory.claims[booking.id.hex].seats == a.body["seats"]

    # ...event by event, too: each seat is in exactly one SeatsHeld of the log (nothing was
    # released here), so no write overwrote another's hold in the aggregate's state
    held_events = [
        e
        for e in container.store.app.events.get(inventory_id_for(UUID(show_id)))
        if type(e).__qualname__.endswith("SeatsHeld")
    ]
    logged = [seat for e in held_events for seat in e.seats]  # type: ignore[attr-defined]
    assert sorted(logged) == sorted(sold)

    # ...and so does the read model: every seat held, by the bookings answered 201
    last = max(a.body["position"] for a in won)
    statuses = wait_until(
        lambda: seat_statuses(api, show_id, last), 30, "the seat map to reach the last hold"
    )
    assert statuses == {seat: "held" for seat in holder}
    print(f"{len(won)} holds, {len(answers) - len(won)} refusals")
