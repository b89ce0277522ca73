"""`ticketblitz serve --workers 2`: two API processes on one port. Both answer, and a hot show
sold through both at once (each fan's keep-alive connection belongs to one of them) sells no
seat twice: the event store, the answers and the read side (through both processes) agree."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from tests.conftest import write_api_env
from tests.e2e.conftest import Api
from tests.e2e.saga_support import wait_until
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "ticketblitz")
ROWS, SEATS_PER_ROW = 4, 20  # 80 seats for 24 fans of up to 6 tickets each: 144 wanted
FANS, TICKETS_WANTED, ATTEMPTS = 24, 6, 40


class TwoWorkers:
    """`serve --workers 2` (both APIs) on the session's servers."""

    def __init__(self, container: Container, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        argv = [CLI, "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, env=write_api_env(container.settings), stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
        try:
            return httpx.get(self.base_url + "/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def api_processes(self) -> list[int]:
        """The supervisor's children that serve (not multiprocessing's resource tracker)."""
        pid = self.process.pid
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return [
            child
            for child in children
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
        ]

    def clients_of(self, pid: int) -> set[int]:
        """The client ports of the connections process `pid` accepted on our port."""
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                local_port = int(cols[1].rsplit(":", 1)[1], 16)
                if local_port == self.port and cols[3] == "01" and cols[9] in inodes:
                    ports.add(int(cols[2].rsplit(":", 1)[1], 16))
        return ports

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture(scope="module")
def workers(container: Container, stack_dir: Path) -> Iterator[TwoWorkers]:
    served = TwoWorkers(container, stack_dir / "serve-workers.log")
    try:
        wait_until(served.healthy, 90, "serve --workers 2 to answer")
        wait_until(lambda: len(served.api_processes()) == 2, 30, "two API processes")
        yield served
    finally:
        served.stop()


def client_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    port: int = stream.get_extra_info("client_addr")[1]
    return port


async def fan(http: httpx.AsyncClient, show_id: str, row: int) -> list[dict[str, Any]]:
    """Ask for two seats in `row` (after a refusal, for the best one) until holding
    TICKETS_WANTED tickets or the show is sold out."""
    answers: list[dict[str, Any]] = []
    tickets = 0
    for attempt in range(ATTEMPTS):
        if tickets >= TICKETS_WANTED:
            break
        refused = bool(answers) and answers[-1]["http"] != 201
        if refused and answers[-1]["problem"] == "not-enough-tickets":
            break
        if refused or attempt % 2:
            asked: dict[str, Any] = {"show_id": show_id, "quantity": 1}
        else:
            first = 1 + (attempt * 3 + row) % (SEATS_PER_ROW - 1)
            asked = {"show_id": show_id, "seats": [f"A-{row}-{first}", f"A-{row}-{first + 1}"]}
        r = await http.post("/api/v1/bookings", json=asked)
        body = r.json()
        problem = str(body.get("type", "")).rsplit("/", 1)[-1]
        answers.append(body | {"http": r.status_code, "problem": problem})
        if r.status_code == 201:
            tickets += len(body["seats"])
    return answers


def test_two_api_processes_share_the_port_and_never_sell_a_seat_twice(
    api: Api, container: Container, workers: TwoWorkers
):
    show_id = api.new_show(rows=ROWS, seats_per_row=SEATS_PER_ROW)
    auths = [api.new_customer()["Authorization"] for _ in range(FANS)]
    processes = workers.api_processes()

    async def connected() -> tuple[list[httpx.AsyncClient], dict[int, int]]:
        """The fans' connections, opened until both processes accepted some (the kernel hands
        each new connection to one of them); how many each process holds."""
        for _ in range(5):
            https = [
                httpx.AsyncClient(base_url=workers.base_url, headers={"Authorization": a})
                for a in auths
            ]
            opened = await asyncio.gather(*(http.get("/health") for http in https))
            assert all(r.status_code == 200 for r in opened)
            ports = {client_port(r) for r in opened}
            held = {pid: len(workers.clients_of(pid) & ports) for pid in processes}
            if all(held.values()):
                return https, held
            await asyncio.gather(*(http.aclose() for http in https))
        raise AssertionError(f"one process accepted every connection: {held}")

    async def sale() -> tuple[dict[int, int], list[list[dict[str, Any]]]]:
        https, held = await connected()
        try:
            answers = await asyncio.gather(
                *(fan(http, show_id, 1 + i % ROWS) for i, http in enumerate(https))
            )
            return held, answers
        finally:
            await asyncio.gather(*(http.aclose() for http in https))

    held, by_fan = asyncio.run(sale())
    assert sum(held.values()) == FANS and all(held.values()), held
    answers = [a for mine in by_fan for a in mine]

    odd = [
        a
        for a in answers
        if a["http"] != 201
        and not (a["http"] == 409 and a["problem"] in {"seats-unavailable", "not-enough-tickets"})
    ]
    assert not odd, odd[:5]
    won = [a for a in answers if a["http"] == 201]
    assert any(a["problem"] == "not-enough-tickets" for a in answers), "demand exceeded supply"
    sold = [seat for a in won for seat in a["seats"]]
    assert len(sold) == len(set(sold)) == ROWS * SEATS_PER_ROW
    holder = {seat: UUID(a["booking_id"]).hex for a in won for seat in a["seats"]}
    assert len({a["booking_id"] for a in won}) == len(won)

    inventory = container.store.get(inventory_id_for(UUID(show_id)), SeatInventory)
    assert inventory.holder == holder
    assert set(inventory.claims) == {UUID(a["booking_id"]).hex for a in won}

    # The read side agrees, asked through each of the two processes
    last = max(a["position"] for a in won)

    def seat_map_via(pid: int) -> dict[str, str] | None:
        """The seat map as of the last hold, from process `pid` (None: not there yet)."""
        for _ in range(40):  # fresh connections until one lands on process `pid`
            with httpx.Client(base_url=workers.base_url, timeout=10) as http:
                r = http.get(f"/api/v1/shows/{show_id}/seats", params={"after": last})
                if client_port(r) not in workers.clients_of(pid):
                    continue
            if r.status_code == 503:  # the read model is not there yet
                return None
            assert r.status_code == 200, r.text
            rows = r.json()["sections"][0]["rows"]
            return {seat["seat"]: seat["status"] for row in rows for seat in row["seats"]}
        return None

    for pid in processes:
        statuses = wait_until(lambda p=pid: seat_map_via(p), 60, f"the seat map via {pid}")
        assert statuses == {seat: "held" for seat in holder}
    print(f"{len(won)} holds; fans' connections per process {held}")
