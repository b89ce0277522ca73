"""Rebuilding every read model while customers book and read: no read fails, none goes back in
time, and each customer's booking is readable as soon as the command answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.common import new_database
from bench.workload import Workload
from http_shell.container import Container
from projections.rebuild import Rebuild
from tests.e2e.conftest import Api, served
from tests.e2e.test_query_api import book
from tests.integration.projection_support import container_on
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

READERS = 3


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[tuple[Api, Container]]:
    """A system of its own, with runners, whose log already holds a few thousand events."""
    assert endpoints.database_url is not None
    with (
        new_database(endpoints.database_url) as url,
        container_on(url, stack_dir / "rebuild-reads") as container,
    ):
        assert container.read_side is not None
        container.read_side.start_runners()
        workload = Workload(container, seed=5, rows=10, seats_per_row=10, general=100)
        try:
            workload.schedule_shows(4)
            for _ in range(4):
                workload.run_wave(400)
        finally:
            workload.close()
        with served(container) as api:
            yield api, container


def test_a_rebuild_during_reads_and_writes_never_fails_a_read_or_goes_backwards(system):
    api, container = system
    show = api.new_show(rows=10, seats_per_row=10, general=200)
    # enough customers that 150 one-ticket holds stay within each one's cap on the show
    customers = [api.new_customer() for _ in range(16)]
    done = threading.Event()
    failures: list[str] = []
    seen: list[list[tuple[int, int]]] = [[] for _ in range(READERS)]
    booked: list[dict[str, Any]] = []

    def reader(index: int) -> None:
        """Reads the show over and over: (position, tickets held) must never decrease."""
        with httpx.Client(base_url=api.base_url, timeout=30) as http:
            while not done.is_set():
                r = http.get(f"/shows/{show}")
                if r.status_code != 200:
                    failures.append(f"GET /shows/{show}: {r.status_code} {r.text}")
                    continue
                body = r.json()
                held = sum(s["held"] for s in body["sections"])
                seen[index].append((body["position"], held))

    def writer() -> None:
        """Books (holds only, so the held count only grows) and reads each booking at once."""
        with httpx.Client(base_url=api.base_url, timeout=30) as http:
            n = 0
            while not done.is_set() and n < 150:
                customer = customers[n % len(customers)]
                placed = book(api, customer, show, section="GA", quantity=1)
                booked.append(placed)
                r = http.get(
                    f"/bookings/{placed['booking_id']}",
                    params={"after": placed["position"]},
                    headers=customer,
                )
                if r.status_code != 200:
                    failures.append(f"GET own booking: {r.status_code} {r.text}")
                n += 1

    # Futures, not bare threads: an assertion or error in a reader or the writer is raised
    # here by .result() and fails the test instead of dying with its thread.
    with ThreadPoolExecutor(READERS + 1) as pool:
        running = [pool.submit(reader, i) for i in range(READERS)]
        running.append(pool.submit(writer))
        try:
            reports = [Rebuild(container.store, page_size=250).run() for _ in range(3)]
        finally:
            done.set()
        for each in running:
            each.result(timeout=60)

    assert not failures, failures[:3]
    assert all(report.replayed > 0 for report in reports)
    assert len(booked) > 0
    for observations in seen:
        assert observations, "a reader read nothing"
        assert observations == sorted(observations), "a read went back in time"
