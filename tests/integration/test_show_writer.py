"""The per-show writer against the real event store: group commit, answers, caches, snapshots."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

import pytest
from eventsourcing.domain import Aggregate, event

from commands.bookings import BookingCommands
from commands.models import (
    BookingRequest,
    OpenSale,
    PlaceHold,
    PriceTier,
    Row,
    ScheduleShow,
    SeatedSection,
)
from commands.show_writer import ShowBatch, ShowWriters
from commands.shows import ShowCommands
from domain.errors import SaleNotOpenError, SeatsUnavailableError
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from infra.event_store import PostgresEventStore
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(endpoints: StackEndpoints) -> Iterator[PostgresEventStore]:
    assert endpoints.database_url is not None
    opened = PostgresEventStore(endpoints.database_url, pool_size=4)
    yield opened
    opened.close()


def a_process(store: PostgresEventStore, snapshot_every: int = 1000, **writer_options: Any):
    """What one API process has: its own writers (and caches) over the shared store."""
    writers = ShowWriters(store, max_batch=100, snapshot_every=snapshot_every, **writer_options)
    bookings = BookingCommands(
        store, writers, clock=lambda: datetime.now(UTC), hold_duration=timedelta(minutes=10)
    )
    return writers, ShowCommands(store, writers), bookings


def on_sale_show(shows: ShowCommands, rows: int = 10, seats: int = 20) -> UUID:
    show_id = shows.schedule_show(
        ScheduleShow(
            title="Hot",
            category="rock",
            venue="Arena",
            starts_at=datetime(2027, 6, 1, 20, tzinfo=UTC),
            currency="EUR",
            price_tiers=[PriceTier(code="STD", price_cents=1000)],
            sections=[
                SeatedSection(
                    code="A",
                    kind="seated",
                    tier="STD",
                    rows=[Row(label=str(r), seats=seats) for r in range(1, rows + 1)],
                )
            ],
        )
    ).show_id
    shows.open_sale(OpenSale(show_id=show_id)).result(timeout=10)
    return show_id


def hold(bookings: BookingCommands, show_id: UUID, **request):
    return bookings.place_hold(
        PlaceHold(
            request=BookingRequest(show_id=show_id, **request),
            customer_id=uuid4(),
            booking_id=uuid4(),
        )
    )


def test_queued_holds_commit_in_batches_and_each_gets_its_own_answer(store):
    writers, shows, bookings = a_process(store)
    show_id = on_sale_show(shows)
    futures = [hold(bookings, show_id, seats=[f"A-{1 + i % 5}-{1 + i % 7}"]) for i in range(300)]
    won, lost = [], []
    for future in futures:
        try:
            won.append(future.result(timeout=30))
        except SeatsUnavailableError as error:
            lost.append(error)
    assert len(won) == 35  # 5 rows x 7 seats, each seat once
    assert len(lost) == 265 and all(len(e.seats) == 1 for e in lost)
    stats = writers.stats()
    assert stats["conflicts"] == 0
    assert stats["batches"] < stats["commands"]  # group commit happened
    inventory = store.get(inventory_id_for(show_id), SeatInventory)
    assert sorted(inventory.holder) == sorted(seat for w in won for seat in w.seats)
    writers.close()


def test_a_second_process_writing_the_same_show_is_noticed_not_overwritten(store):
    writers_one, shows, one = a_process(store)
    writers_two, _, two = a_process(store)
    show_id = on_sale_show(shows)
    first = hold(one, show_id, seats=["A-1-1"]).result(timeout=10)  # one caches the inventory
    hold(two, show_id, seats=["A-1-2"]).result(timeout=10)  # two writes behind one's back
    with pytest.raises(SeatsUnavailableError) as refused:
        hold(one, show_id, seats=["A-1-2", "A-1-3"]).result(timeout=10)
    assert refused.value.seats == ["A-1-2"]  # one reloaded: it knows about two's hold
    assert hold(one, show_id, seats=["A-1-3"]).result(timeout=10).position > first.position
    assert writers_one.stats()["conflicts"] == 0
    writers_one.close()
    writers_two.close()


def test_a_command_that_fails_half_way_leaves_no_trace_and_spares_the_others(store):
    writers, shows, bookings = a_process(store)
    show_id = on_sale_show(shows)
    writer = writers.for_show(show_id)

    def half_applied(batch: ShowBatch) -> None:
        batch.inventory.close_sale()  # an event ...
        raise SaleNotOpenError(show_id, "refused after a change")  # ... then a refusal

    before = hold(bookings, show_id, seats=["A-1-1"])
    broken = writer.submit(half_applied)
    after = hold(bookings, show_id, seats=["A-1-2"])
    assert before.result(timeout=10).seats == ["A-1-1"]
    with pytest.raises(SaleNotOpenError):
        broken.result(timeout=10)
    assert after.result(timeout=10).seats == ["A-1-2"]
    inventory = store.get(inventory_id_for(show_id), SeatInventory)
    assert inventory.on_sale  # the half-applied close was never saved
    assert set(inventory.holder) == {"A-1-1", "A-1-2"}
    writers.close()


def test_a_hot_inventory_is_snapshotted_and_loads_from_the_snapshot(store):
    writers, shows, bookings = a_process(store, snapshot_every=50)
    show_id = on_sale_show(shows)
    for future in [hold(bookings, show_id, quantity=1) for _ in range(120)]:
        future.result(timeout=30)
    inventory_id = inventory_id_for(show_id)
    assert store.app.snapshots is not None
    deadline = time.monotonic() + 15
    snapshots: list[Any] = []
    while not snapshots and time.monotonic() < deadline:  # taken once the show is quiet
        time.sleep(0.05)
        snapshots = list(store.app.snapshots.get(inventory_id))
    assert snapshots and snapshots[-1].originator_version >= 50
    cached = writers.for_show(show_id)._load_inventory()
    fresh = store.get(inventory_id, SeatInventory)
    assert fresh.version == cached.version
    assert fresh.holder == cached.holder and fresh.claims == cached.claims
    writers.close()


def test_a_quiet_show_gives_its_inventory_back_and_loads_it_again_when_needed(store):
    writers, shows, bookings = a_process(
        store, snapshot_every=10, snapshot_idle_seconds=0.1, forget_idle_seconds=0.5
    )
    show_id = on_sale_show(shows)
    for future in [hold(bookings, show_id, seats=[f"A-1-{n}"]) for n in range(1, 21)]:
        future.result(timeout=30)
    writer = writers.for_show(show_id)
    assert writer.inventory_cached

    deadline = time.monotonic() + 15
    while writer.inventory_cached and time.monotonic() < deadline:
        time.sleep(0.05)

    assert not writer.inventory_cached
    assert writers.stats()["cached_inventories"] == 0
    with pytest.raises(SeatsUnavailableError):  # loaded again: it still knows every hold
        hold(bookings, show_id, seats=["A-1-20"]).result(timeout=30)
    assert hold(bookings, show_id, seats=["A-2-1"]).result(timeout=30).seats == ["A-2-1"]
    writers.close()


class Tally(Aggregate):
    """A stand-in companion of a show (like its waiting list): counts what it was told."""

    @event("Started")
    def __init__(self, show_id: UUID) -> None:
        self.show_id = show_id
        self.count = 0

    @staticmethod
    def create_id(show_id: UUID) -> UUID:
        return tally_id(show_id)

    @event("Counted")
    def add(self) -> None:
        self.count += 1


def tally_id(show_id: UUID) -> UUID:
    return uuid5(show_id, "tally")


def count_once(show_id: UUID) -> Any:
    def decide(batch: ShowBatch) -> int:
        tally = batch.companion(tally_id(show_id), Tally, lambda: Tally(show_id=show_id))
        tally.add()
        return tally.count

    return decide


def peek(show_id: UUID) -> Any:
    def decide(batch: ShowBatch) -> int | None:
        found = batch.find_companion(tally_id(show_id), Tally)
        return None if found is None else found.count

    return decide


def test_a_companion_is_created_once_saved_with_the_batch_and_seen_by_a_second_process(store):
    writers, shows, _ = a_process(store)
    other_writers, _, _ = a_process(store)
    try:
        show_id = on_sale_show(shows, rows=1, seats=2)
        writer, other = writers.for_show(show_id), other_writers.for_show(show_id)
        assert other.submit(peek(show_id)).result(timeout=10)[0] is None  # absence, cached
        counts = [writer.submit(count_once(show_id)) for _ in range(5)]
        assert sorted(f.result(timeout=10)[0] for f in counts) == [1, 2, 3, 4, 5]
        assert store.get(tally_id(show_id), Tally).count == 5
        # The other process cached "none" and a stale count: each drain checks the version.
        assert other.submit(peek(show_id)).result(timeout=10)[0] == 5
        assert other.submit(count_once(show_id)).result(timeout=10)[0] == 6
        assert writer.submit(count_once(show_id)).result(timeout=10)[0] == 7
        assert store.get(tally_id(show_id), Tally).version == 8  # Started + 7 counts
    finally:
        writers.close()
        other_writers.close()


def test_a_companion_created_by_a_decision_that_fails_is_not_saved(store):
    writers, shows, _ = a_process(store)
    try:
        show_id = on_sale_show(shows, rows=1, seats=2)

        def create_then_fail(batch: ShowBatch) -> None:
            batch.companion(tally_id(show_id), Tally, lambda: Tally(show_id=show_id)).add()
            raise SeatsUnavailableError(["A-1"])

        with pytest.raises(SeatsUnavailableError):
            writers.for_show(show_id).submit(create_then_fail).result(timeout=10)
        assert not store.exists(tally_id(show_id))
        assert writers.for_show(show_id).submit(peek(show_id)).result(timeout=10)[0] is None
    finally:
        writers.close()
