"""The read models, built from the real event store by the real runners and rebuilds."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from bench.common import new_database
from bench.workload import Workload
from commands.models import GeneralSection, PriceTier, ScheduleShow
from http_shell.container import Container
from projections.positions import projection_statuses
from projections.rebuild import Rebuild, RebuildBusyError, RebuildProgress
from projections.runner import ProjectionRunners
from tests.integration.projection_support import (
    container_on,
    generations,
    positions,
    snapshot,
)
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busy_log(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[tuple[str, Container]]:
    """A fresh database where a few thousand random commands ran while the runners followed."""
    assert endpoints.database_url is not None
    with (
        new_database(endpoints.database_url) as url,
        container_on(url, stack_dir / "busy-log") as container,
    ):
        runners = container.read_side.start_runners() if container.read_side else None
        assert runners is not None
        workload = Workload(container, seed=11, rows=20, seats_per_row=25, general=200)
        try:
            workload.schedule_shows(6)
            for _ in range(6):
                workload.run_wave(500)
            workload.close_a_sale()
        finally:
            workload.close()
        assert runners.wait_for(container.store.head_position(), timeout=30)
        yield url, container


def test_a_rebuilt_read_model_is_identical_to_the_incremental_one(busy_log):
    url, container = busy_log
    before = snapshot(url)
    statuses = Counter(row[3] for row in before["bookings"])
    assert {"held", "payment_requested", "confirmed", "cancelled", "expired", "refunded"} <= set(
        statuses
    ), statuses  # the workload went through every kind of event
    assert {row[6] for row in before["seats"]} == {"free", "held", "sold"}

    old = generations(url)

    report = Rebuild(container.store, None, page_size=700).run()

    assert report.generations == {name: g + 1 for name, g in old.items()}
    assert report.replayed == container.store.head_position()
    assert snapshot(url) == before
    with psycopg.connect(url) as conn:  # the old generations are gone
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}
    for name, generation in old.items():
        assert f"read_{name}_g{generation + 1}" in schemas
        assert f"read_{name}_g{generation}" not in schemas


def test_runners_follow_the_new_generation_after_a_rebuild(busy_log):
    url, container = busy_log
    Rebuild(container.store, ["bookings"]).run()
    show = container.shows.schedule_show(_a_show_command())

    runners = container.read_side.runners if container.read_side else None
    assert runners is not None and runners.wait_for(show.position, timeout=10)
    assert positions(url)["bookings"] >= show.position
    assert any(row[0] == show.show_id for row in snapshot(url)["shows"])


def test_an_interrupted_rebuild_resumes_where_it_stopped(busy_log):
    url, container = busy_log
    before = snapshot(url)

    def interrupt_after_two_pages(progress: RebuildProgress) -> None:
        if progress.replayed >= 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Rebuild(container.store, ["seat_map", "sales"], 500, interrupt_after_two_pages).run()
    with psycopg.connect(url) as conn:
        building = conn.execute(
            "SELECT projection FROM read.generations WHERE state = 'building'"
        ).fetchall()
    assert sorted(b[0] for b in building) == ["sales", "seat_map"]
    assert snapshot(url) == before  # queries still use the old generation

    resumed = Rebuild(container.store, ["seat_map", "sales"], 500).run()

    assert resumed.resumed
    assert resumed.replayed < container.store.head_position()  # it did not start over
    assert snapshot(url) == before


def test_a_second_rebuild_of_the_same_read_model_is_refused(busy_log):
    _, container = busy_log
    refused: list[Exception] = []

    def try_another(_: RebuildProgress) -> None:
        if not refused:
            try:
                Rebuild(container.store, ["catalog"]).run()
            except RebuildBusyError as error:
                refused.append(error)

    Rebuild(container.store, ["catalog"], 500, try_another).run()
    assert refused and "catalog" in str(refused[0])


def test_events_the_read_models_do_not_know_are_skipped(busy_log):
    url, container = busy_log
    with psycopg.connect(url) as conn:  # e.g. written by a newer version of the code
        conn.execute(
            "INSERT INTO ticketblitz_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, 1, 'gone.module:Gadget.Invented', '{}')",
            (uuid4(),),
        )
    head = container.store.head_position()
    runners = container.read_side.runners if container.read_side else None
    assert runners is not None and runners.wait_for(head, timeout=10)
    assert set(positions(url).values()) == {head}


def test_a_second_runner_of_the_same_read_model_stands_by(busy_log):
    url, container = busy_log
    spare = ProjectionRunners(container.store, ["catalog"], poll_interval=0.01).start()
    try:
        show = container.shows.schedule_show(_a_show_command())
        assert spare.wait_for(show.position, timeout=10)
        rows = [row for row in snapshot(url)["shows"] if row[0] == show.show_id]
        assert len(rows) == 1  # applied once, by whichever runner held the lock
    finally:
        spare.stop()


def _a_show_command() -> ScheduleShow:
    return ScheduleShow(
        title=f"Late Show {uuid4().hex[:6]}",
        category="comedy",
        venue="Basement",
        starts_at=datetime(2027, 6, 1, 21, tzinfo=UTC),
        currency="EUR",
        price_tiers=[PriceTier(code="GA", price_cents=1500)],
        sections=[GeneralSection(code="G", kind="general", tier="GA", capacity=50)],
    )


def test_a_read_model_of_another_version_is_rebuilt_before_it_is_followed(busy_log):
    url, container = busy_log
    before = snapshot(url)
    with psycopg.connect(url) as conn:  # as if an older version of the code had built it
        conn.execute(
            "UPDATE read.generations SET fingerprint = 'older' "
            "WHERE projection = 'catalog' AND state = 'active'"
        )
        assert [s.stale for s in projection_statuses(container.store, conn)[1]].count(True) == 1
    old = generations(url)["catalog"]

    upgraded = ProjectionRunners(container.store, ["catalog"], rebuild_stale=True).start()
    try:
        deadline = time.monotonic() + 30
        while generations(url)["catalog"] == old:
            assert time.monotonic() < deadline, "the stale read model was not rebuilt"
            time.sleep(0.05)
    finally:
        upgraded.stop()

    with psycopg.connect(url) as conn:
        assert not any(s.stale for s in projection_statuses(container.store, conn)[1])
    assert snapshot(url) == before
