"""The write API process is SIGKILLed in the middle of a booking storm.

Given fans who retry with the same Idempotency-Key until they get an answer, when the API
process dies at a random moment and comes back, then each fan has exactly one booking, and the
event store holds no half-written booking (no hold without its booking, nor the reverse).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest

from commands.models import OpenSale, PriceTier, RegisterAccount, Row, ScheduleShow, SeatedSection
from domain.booking import Booking
from domain.ids import booking_id_for_request, inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from tests.conftest import write_api_env
from tests.faults.support import seeded_random
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration

FANS = 40
CLI = str(Path(sys.executable).parent / "ticketblitz")


def start_write_api(container: Container, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [CLI, "serve", "--api", "write", "--host", "127.0.0.1", "--port", str(port)],
        env=write_api_env(container.settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the write API did not start")


async def fan(base: str, token: str, show_id: str, key: str) -> httpx.Response:
    """Retry with the same key until the API answers (connection errors while it is dead)."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        for _ in range(400):
            try:
                answer = await http.post(
                    "/api/v1/bookings", json={"show_id": show_id, "quantity": 2}
                )
                if answer.status_code < 500:
                    return answer
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("no answer after retries")


def test_killed_mid_storm_every_fan_ends_with_exactly_one_booking(container: Container):
    show_id = container.shows.schedule_show(
        ScheduleShow(
            title="Storm",
            category="rock",
            venue="Arena",
            starts_at=datetime(2027, 6, 1, 20, tzinfo=UTC),
            currency="EUR",
            price_tiers=[PriceTier(code="STD", price_cents=5000)],
            sections=[
                SeatedSection(
                    code="A",
                    kind="seated",
                    tier="STD",
                    rows=[Row(label=str(r), seats=20) for r in range(1, 11)],
                )
            ],
        )
    ).show_id
    container.shows.open_sale(OpenSale(show_id=show_id)).result(timeout=10)
    fans = []
    for i in range(FANS):
        registered = container.accounts.register(
            RegisterAccount(
                email=f"storm-{uuid4().hex[:10]}-{i}@example.com",
                password="storm password",
                name=f"Fan {i}",
            )
        )
        token = container.tokens.issue(registered.account_id, "customer")
        fans.append((registered.account_id, token, uuid4().hex))

    rng = seeded_random()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = start_write_api(container, port)

    async def storm() -> list[httpx.Response]:
        tasks = [asyncio.create_task(fan(base, token, str(show_id), key)) for _, token, key in fans]
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        first.send_signal(signal.SIGKILL)  # mid-storm, no goodbye
        first.wait(timeout=10)
        second = await asyncio.to_thread(start_write_api, container, port)
        try:
            return await asyncio.gather(*tasks)
        finally:
            second.terminate()
            second.wait(timeout=10)

    answers = asyncio.run(storm())

    assert [a.status_code for a in answers] == [201] * FANS
    inventory = container.store.get(inventory_id_for(show_id), SeatInventory)
    expected = {booking_id_for_request(account, key) for account, _, key in fans}
    assert {UUID(a.json()["booking_id"]) for a in answers} == expected  # one per fan
    assert {UUID(hex_id) for hex_id in inventory.claims} == expected  # no extra holds
    for booking_id in expected:  # every hold has its booking and agrees with it
        booking = container.store.get(booking_id, Booking)
        assert inventory.claims[booking_id.hex].seats == booking.seats
    assert len(inventory.holder) == 2 * FANS
