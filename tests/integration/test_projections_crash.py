"""A projection runner killed in the middle of a page, then restarted, builds the same read
models as a run that was never interrupted (each page and its position commit together)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from bench.common import new_database
from bench.workload import Workload
from projections.rebuild import Rebuild
from tests.integration.projection_support import container_on, positions, snapshot
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

RUNNER = (
    "import sys; from ticketblitz.cli import main; sys.argv[1:] = ['projections', 'run']; main()"
)


def page_in_flight(conn: psycopg.Connection) -> bool:
    """Some other session of this database is inside a transaction that has written."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
    ).fetchone()
    return bool(row and row[0])


def test_a_runner_killed_mid_page_resumes_to_the_same_read_models(
    endpoints: StackEndpoints, stack_dir: Path
):
    assert endpoints.database_url is not None
    with (
        new_database(endpoints.database_url) as url,
        container_on(url, stack_dir / "crash") as container,
    ):
        # Given a log of some thousands of events that no runner has followed yet
        workload = Workload(container, seed=3, rows=10, seats_per_row=20, general=100)
        try:
            workload.schedule_shows(6)
            for _ in range(5):
                workload.run_wave(600)
        finally:
            workload.close()
        head = container.store.head_position()

        # When a runner process is killed (SIGKILL) while it is writing a page
        env = {
            **os.environ,
            "TICKETBLITZ_DATABASE_URL": url,
            "TICKETBLITZ_PROJECTION_PAGE_SIZE": "400",
        }
        runner = subprocess.Popen([sys.executable, "-c", RUNNER], env=env)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                deadline = time.monotonic() + 60
                while not (min(positions(url).values(), default=0) > 0 and page_in_flight(conn)):
                    assert runner.poll() is None, "the runner exited"
                    assert time.monotonic() < deadline, "the runner made no progress"
                    time.sleep(0.002)
                runner.send_signal(signal.SIGKILL)
                runner.wait(10)
        finally:
            if runner.poll() is None:
                runner.kill()
        killed_at = positions(url)
        assert min(killed_at.values()) < head, "the runner finished before it was killed"

        # Then a restarted runner completes the read models from where they were
        runners = container.read_side.start_runners() if container.read_side else None
        assert runners is not None and runners.wait_for(head, timeout=60)
        resumed = snapshot(url)

        # ... and they equal read models built in one uninterrupted run
        Rebuild(container.store).run()
        assert snapshot(url) == resumed
