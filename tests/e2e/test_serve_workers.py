"""`ticketblitz serve --workers 2`: two API processes on one port. Fresh connections are spread
over both (each listens on its own SO_REUSEPORT socket), and a hot show sold through both at
once (each fan's keep-alive connection belongs to one of them) sells no seat twice: the event
store, the answers and the read side (through both processes) agree."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
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
FRESH_CONNECTIONS = 40  # hashed over 2 processes: fewer than a fifth on one is ~1 in 20,000


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
        serving = []
        for child in children:
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:  # gone meanwhile
                continue
            if argv and b"resource_tracker" not in argv:  # (empty: a dead one, not yet reaped)
                serving.append(child)
        return serving

    def listening(self) -> int:
        """How many API processes listen on our port (each on a socket of its own, once its
        app has started)."""
        return sum(bool(self._sockets_of(pid, "0A")) for pid in self.api_processes())

    def clients_of(self, pid: int) -> set[int]:
        """The client ports of the connections process `pid` accepted on our port."""
        return self._sockets_of(pid, "01")

    def _sockets_of(self, pid: int, state: str) -> set[int]:
        """The remote ports of process `pid`'s TCP sockets on our port in `state` (hex, as in
        /proc/net/tcp: 01 established, 0A listening)."""
        inodes = set()
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # the process is gone
            return set()
        for fd in fds:
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
                if local_port == self.port and cols[3] == state and cols[9] in inodes:
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
        wait_until(lambda: served.listening() == 2, 90, "both API processes to listen")
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


def test_fresh_connections_are_spread_over_both_processes(workers: TwoWorkers):
    """Each process gets a fair share of new connections (with one shared listening socket,
    the process idle at the moment won the accept race: 23 of 24 on one process)."""
    processes = workers.api_processes()

    async def opened() -> dict[int, int]:
        https = [httpx.AsyncClient(base_url=workers.base_url) for _ in range(FRESH_CONNECTIONS)]
        try:
            answers = await asyncio.gather(*(http.get("/health") for http in https))
            assert all(r.status_code == 200 for r in answers)
            ports = {client_port(r) for r in answers}
            assert len(ports) == FRESH_CONNECTIONS
            return {pid: len(workers.clients_of(pid) & ports) for pid in processes}
        finally:
            await asyncio.gather(*(http.aclose() for http in https))

    held = asyncio.run(opened())
    assert sum(held.values()) == FRESH_CONNECTIONS, held
    assert all(n >= FRESH_CONNECTIONS // 5 for n in held.values()), held
    print(f"{FRESH_CONNECTIONS} fresh connections per process: {held}")


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
        statuses = wait_until(partial(seat_map_via, pid), 60, f"the seat map via {pid}")
        assert statuses == {seat: "held" for seat in holder}
    print(f"{len(won)} holds; fans' connections per process {held}")


def test_a_worker_that_dies_is_replaced_and_listens_again(workers: TwoWorkers):
    """The supervisor respawns a killed worker; the new one binds its own socket to the port
    and gets connections again (run last: the processes change)."""
    before = workers.api_processes()
    os.kill(before[0], signal.SIGKILL)

    def replaced() -> bool:
        return len(set(workers.api_processes()) - set(before)) == 1 and workers.listening() == 2

    wait_until(replaced, 120, "a replacement worker listening")
    assert httpx.get(workers.base_url + "/health", timeout=10).status_code == 200
