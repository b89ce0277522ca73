"""The waiting-list read model (projections/waitlist.py), built from WaitingList events in the
real event store by the real runners, and rebuilt page by page to the same rows; and the
booking read model's `offer` and `code`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from bench.common import new_database
from commands.models import GeneralSection, PriceTier, Row, ScheduleShow, SeatedSection
from domain.booking import Booking
from domain.waitlist import WaitingList, offer_booking_id_for
from http_shell.container import Container
from projections.rebuild import Rebuild
from projections.waitlist import (
    demand_of_show,
    entries_of_customer,
    entries_of_show,
    status_counts,
)
from tests.integration.projection_support import container_on, snapshot
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

JOINED_AT = datetime(2027, 1, 10, 12, tzinfo=UTC)
EXPIRES_AT = datetime(2027, 1, 10, 13, tzinfo=UTC)
SECTIONS = {"A": "seated", "GA": "general"}


@dataclass
class Waited:
    url: str
    container: Container
    show_id: UUID
    title: str
    entries: dict[str, UUID]  # name -> entry id
    customers: dict[str, UUID]  # name -> customer id


def caught_up(container: Container) -> None:
    runners = container.read_side.runners if container.read_side else None
    assert runners is not None
    assert runners.wait_for(container.store.head_position(), timeout=30)


@pytest.fixture(scope="module")
def waited(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[Waited]:
    """A show (section A at 90.00, GA at 30.00) whose waiting list went through every event:
    six entries joined; one offer paid, one outstanding, one lapsed; one entry left."""
    assert endpoints.database_url is not None
    with (
        new_database(endpoints.database_url) as url,
        container_on(url, stack_dir / "waitlist-projection") as container,
    ):
        assert container.read_side is not None
        container.read_side.start_runners()
        title = f"Waiting Night {uuid4().hex[:6]}"
        show_id = container.shows.schedule_show(
            ScheduleShow(
                title=title,
                category="rock",
                venue="Hall",
                starts_at=datetime(2027, 6, 1, 20, tzinfo=UTC),
                currency="EUR",
                price_tiers=[
                    PriceTier(code="PREM", price_cents=9000),
                    PriceTier(code="STD", price_cents=3000),
                ],
                sections=[
                    SeatedSection(
                        code="A", kind="seated", tier="PREM", rows=[Row(label="1", seats=5)]
                    ),
                    GeneralSection(code="GA", kind="general", tier="STD", capacity=50),
                ],
            )
        ).show_id
        names = ["first", "second", "third", "fourth", "fifth", "sixth"]
        wanted: dict[str, tuple[int, str | None]] = {
            "first": (2, "A"),
            "second": (1, None),
            "third": (3, "GA"),
            "fourth": (1, "A"),
            "fifth": (2, None),
            "sixth": (1, "A"),
        }
        customers = {name: uuid4() for name in names}
        entries = {name: uuid4() for name in names}
        waiting_list = WaitingList(show_id=show_id)
        for number, name in enumerate(names[:3]):
            quantity, section = wanted[name]
            waiting_list.join(
                entries[name],
                customers[name],
                quantity,
                section,
                JOINED_AT + timedelta(minutes=number),
                SECTIONS,
            )
        container.store.save(waiting_list)
        caught_up(container)  # later events find the list's show in the read model
        for number, name in enumerate(names[3:], start=3):
            quantity, section = wanted[name]
            waiting_list.join(
                entries[name],
                customers[name],
                quantity,
                section,
                JOINED_AT + timedelta(minutes=number),
                SECTIONS,
            )
        first_offer = offer_booking_id_for(entries["first"])
        waiting_list.make_offer(entries["first"], first_offer, ["A-1-1", "A-1-2"], {}, EXPIRES_AT)
        waiting_list.make_offer(
            entries["second"], offer_booking_id_for(entries["second"]), [], {"GA": 1}, EXPIRES_AT
        )
        waiting_list.make_offer(
            entries["sixth"], offer_booking_id_for(entries["sixth"]), ["A-1-3"], {}, EXPIRES_AT
        )
        container.store.save(waiting_list)
        waiting_list.accept_offer(entries["first"])
        waiting_list.lapse_offer(entries["sixth"], "hold expired")
        waiting_list.leave(entries["third"], "changed my mind")
        container.store.save(waiting_list)
        caught_up(container)
        yield Waited(url, container, show_id, title, entries, customers)


def rows_by_entry(url: str) -> dict[UUID, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute("SELECT * FROM read.waitlist_entries")
        names = [c.name for c in cur.description or ()]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def test_each_entry_has_its_show_customer_status_and_offer(waited: Waited):
    rows = rows_by_entry(waited.url)
    entries = waited.entries

    assert set(rows) == set(entries.values())
    assert {name: rows[entry]["status"] for name, entry in entries.items()} == {
        "first": "fulfilled",
        "second": "offered",
        "third": "left",
        "fourth": "waiting",
        "fifth": "waiting",
        "sixth": "lapsed",
    }
    assert {row["show_id"] for row in rows.values()} == {waited.show_id}
    first = rows[entries["first"]]
    assert first["customer_id"] == waited.customers["first"]
    assert (first["quantity"], first["section"]) == (2, "A")
    assert first["booking_id"] == offer_booking_id_for(entries["first"])
    assert first["offer_seats"] == ["A-1-1", "A-1-2"]
    assert first["expires_at"] == EXPIRES_AT
    assert first["joined_at"] == JOINED_AT
    second = rows[entries["second"]]
    assert (second["section"], second["offer_general"]) == (None, {"GA": 1})
    assert rows[entries["third"]]["reason"] == "changed my mind"
    assert rows[entries["third"]]["booking_id"] is None
    assert rows[entries["sixth"]]["reason"] == "hold expired"
    assert rows[entries["fourth"]]["booking_id"] is None
    # first come, first served: the order they joined in
    ordered = sorted(rows.values(), key=lambda r: r["sequence"])
    assert [r["entry_id"] for r in ordered] == list(entries.values())


def test_positions_count_the_entries_ahead_still_on_the_list(waited: Waited):
    with psycopg.connect(waited.url) as conn:
        listed = entries_of_show(conn, waited.show_id, 100)
        mine = entries_of_customer(conn, waited.customers["fifth"], 10)
        page = entries_of_show(conn, waited.show_id, 2, after_entry=waited.entries["second"])

    # the fourth has the second (offered) ahead; the fifth also the fourth; the first
    # (fulfilled), the third (left) and the sixth (lapsed) count no more
    positions = {r["entry_id"]: r["position"] for r in listed}
    entries = waited.entries
    assert [positions[entries[name]] for name in entries] == [None, None, None, 2, 3, None]
    assert [r["entry_id"] for r in page] == [entries["third"], entries["fourth"]]
    [entry] = mine
    assert (entry["entry_id"], entry["position"], entry["title"]) == (
        entries["fifth"],
        3,
        waited.title,
    )


def test_demand_prices_a_section_at_its_tier_and_any_section_at_the_cheapest(waited: Waited):
    with psycopg.connect(waited.url) as conn:
        demand = demand_of_show(conn, waited.show_id)
        counts = status_counts(conn, waited.show_id)

    assert [(d["section"], d["entries"], d["tickets"], d["revenue_cents"]) for d in demand] == [
        (None, 1, 2, 2 * 3000),  # the fifth, anywhere: the cheapest tier (STD)
        ("A", 1, 1, 9000),  # the fourth, in A: PREM
    ]
    assert counts == {"waiting": 2, "offered": 1, "fulfilled": 1, "lapsed": 1, "left": 1}


def test_a_rebuild_page_by_page_gives_the_same_rows(waited: Waited):
    before = snapshot(waited.url)["waitlist_entries"]

    Rebuild(waited.container.store, ["waitlist"], page_size=1).run()

    assert snapshot(waited.url)["waitlist_entries"] == before
    assert len(before) == 6


def test_a_booking_shows_whether_it_is_an_offer_and_its_code(waited: Waited):
    container = waited.container
    offer = Booking(
        booking_id=uuid4(),
        show_id=waited.show_id,
        customer_id=waited.customers["fourth"],
        seats=["A-1-4"],
        general={},
        amount_cents=9000,
        currency="EUR",
        hold_expires_at=EXPIRES_AT,
        payment_method=None,
        offer=True,
    )
    coded = Booking(
        booking_id=uuid4(),
        show_id=waited.show_id,
        customer_id=waited.customers["fifth"],
        seats=[],
        general={"GA": 2},
        amount_cents=6000,
        currency="EUR",
        hold_expires_at=EXPIRES_AT,
        payment_method=None,
        code="FANCLUB-1",
    )
    container.store.save(offer, coded)
    caught_up(container)

    with psycopg.connect(waited.url) as conn:
        found = {
            booking_id: (is_offer, code)
            for booking_id, is_offer, code in conn.execute(
                "SELECT booking_id, offer, code FROM read.bookings WHERE booking_id = ANY(%s)",
                ([offer.id, coded.id],),
            ).fetchall()
        }
    assert found == {offer.id: (True, None), coded.id: (False, "FANCLUB-1")}
