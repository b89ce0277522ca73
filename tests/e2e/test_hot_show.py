"""A hot on-sale over HTTP: 64 clients fight over the seats of one 500-seat show."""

from __future__ import annotations

import asyncio
import random
from uuid import UUID

import httpx
import pytest

from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration

CLIENTS = 64
ROWS, SEATS_PER_ROW = 20, 25  # 500 seats
TICKETS_PER_CUSTOMER = 10  # the default cap per customer and show


async def fan(
    base_url: str,
    headers: dict[str, str],
    show_id: str,
    seed: int,
    won: dict[str, list[str]],
    lost: list[tuple[list[str], list[str]]],
) -> None:
    """Ask for 1-4 adjacent seats at random until the show has no seats left (or this fan
    holds its share: 64 fans x 10 is more than the 500 seats, so the show still sells out)."""
    rng = random.Random(seed)
    mine = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
        # Each round wins a seat or ends: more rounds than seats means the show never sold out.
        for _ in range(ROWS * SEATS_PER_ROW + 1):
            if mine >= TICKETS_PER_CUSTOMER:
                return
            row, first = rng.randint(1, ROWS), rng.randint(1, SEATS_PER_ROW)
            n = min(rng.randint(1, 4), TICKETS_PER_CUSTOMER - mine)
            seats = [f"A-{row}-{s}" for s in range(first, min(first + n, SEATS_PER_ROW + 1))]
            r = await http.post("/bookings", json={"show_id": show_id, "seats": seats})
            if r.status_code == 201:
                won[r.json()["booking_id"]] = r.json()["seats"]
                mine += len(r.json()["seats"])
                continue
            assert r.status_code == 409, r.text
            assert r.json()["type"].endswith("/seats-unavailable"), r.text
            lost.append((seats, r.json()["seats"]))
            # Then try best-available once: a 409 "not enough tickets" means sold out.
            r = await http.post("/bookings", json={"show_id": show_id, "quantity": 1})
            if r.status_code == 201:
                won[r.json()["booking_id"]] = r.json()["seats"]
                mine += 1
                continue
            assert r.status_code == 409, r.text
            assert r.json()["type"].endswith("/not-enough-tickets"), r.text
            return
    raise AssertionError(f"fan {seed}: the show was not sold out after {ROWS * SEATS_PER_ROW} wins")


async def on_sale(base_url: str, customers: list[dict[str, str]], show_id: str):
    won: dict[str, list[str]] = {}
    lost: list[tuple[list[str], list[str]]] = []
    await asyncio.gather(
        *(
            fan(base_url, {"Authorization": c["Authorization"]}, show_id, i, won, lost)
            for i, c in enumerate(customers)
        )
    )
    return won, lost


def test_64_clients_never_share_a_seat_and_losers_learn_which_seats(
    api: Api, container: Container, base_url: str
):
    show_id = api.new_show(rows=ROWS, seats_per_row=SEATS_PER_ROW)
    customers = [api.new_customer() for _ in range(CLIENTS)]

    won, lost = asyncio.run(on_sale(base_url, customers, show_id))

    sold = [seat for seats in won.values() for seat in seats]
    assert len(sold) == len(set(sold)) == ROWS * SEATS_PER_ROW  # every seat, exactly once
    holder = {seat: booking for booking, seats in won.items() for seat in seats}
    assert lost, "a hot show must have losers"
    for asked, refused in lost:
        assert refused and set(refused) <= set(asked)  # each 409 names its own seats
        assert all(seat in holder for seat in refused)
    # The event store agrees with what the clients were told.
    inventory = container.store.get(inventory_id_for(UUID(show_id)), SeatInventory)
    assert {seat: UUID(b).hex for seat, b in holder.items()} == inventory.holder
    assert set(inventory.claims) == {UUID(b).hex for b in won}
