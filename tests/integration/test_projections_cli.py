"""`ticketblitz projections status|rebuild` as an operator runs them (`run` is exercised by
test_projections_crash.py, in a process of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.common import new_database
from bench.workload import Workload
from tests.integration.projection_support import container_on, generations
from ticketblitz.cli import app
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[str]:
    assert endpoints.database_url is not None
    with (
        new_database(endpoints.database_url) as url,
        container_on(url, stack_dir / "cli") as container,
    ):
        workload = Workload(container, seed=2, rows=5, seats_per_row=10, general=50)
        try:
            workload.schedule_shows(3)
            workload.run_wave(300)
        finally:
            workload.close()
        yield url


def ticketblitz(*args: str, url: str | None, tmp_path: Path):
    env = {"TICKETBLITZ_DATA_DIR": str(tmp_path), "TICKETBLITZ_DATABASE_URL": url}
    return CliRunner().invoke(app, list(args), env=env)


def test_rebuild_all_reports_the_events_it_replayed(database: str, tmp_path: Path):
    before = generations(database)

    result = ticketblitz("projections", "rebuild", "--all", url=database, tmp_path=tmp_path)

    assert result.exit_code == 0, result.output
    assert "events replayed in" in result.stdout
    assert "events/s" in result.stdout
    assert generations(database) == {name: g + 1 for name, g in before.items()}


def test_status_shows_each_read_model_with_its_lag(database: str, tmp_path: Path):
    result = ticketblitz("projections", "status", url=database, tmp_path=tmp_path)

    assert result.exit_code == 0, result.output
    for name in ("catalog", "seat_map", "bookings", "sales"):
        assert name in result.stdout
    assert "event store head" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rebuild"], "name the read models to rebuild, or use --all"),
        (["rebuild", "catalog", "--all"], "name the read models to rebuild, or use --all"),
        (
            ["rebuild", "turnstiles"],
            "unknown projection 'turnstiles' "
            "(known: catalog, seat_map, bookings, sales, reports, accounts, tickets, waitlist)",
        ),
    ],
)
def test_wrong_arguments_are_one_line_and_exit_2(database, tmp_path, args, message):
    result = ticketblitz("projections", *args, url=database, tmp_path=tmp_path)

    assert result.exit_code == 2
    assert result.stderr.strip() == f"ticketblitz: error: {message}"


def test_without_a_database_it_says_what_to_do(tmp_path: Path):
    result = ticketblitz("projections", "status", url=None, tmp_path=tmp_path)

    assert result.exit_code == 2
    assert "no database: set TICKETBLITZ_DATABASE_URL, or run `ticketblitz up` first" in (
        result.stderr
    )
