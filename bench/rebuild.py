"""Benchmark: `ticketblitz projections rebuild --all` on a log of N events.

    .venv/bin/python -m bench.rebuild --events 100000 [--database-url URL] [--page-size 5000]

Generates the log through the real command handlers (bench/workload.py) in a fresh database
(an embedded PostgreSQL in a temporary directory, or a new database on --database-url's server,
dropped afterwards), then measures in the same run:

- a raw scan of the events table decoding every event (the ceiling for any follower),
- the same scan decoding only the events the read models use,
- the incremental runners catching up from zero (one follower per read model),
- the rebuild of every read model (one shared scan, every read model applied per page): the
  code `ticketblitz projections rebuild --all` runs, without its progress bar.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.common import fresh_database
from bench.workload import generated_log
from infra.event_store import PostgresEventStore
from infra.log_follower import PageReader, read_page
from projections.base import EventReader
from projections.rebuild import Rebuild
from projections.registry import projection_kinds
from projections.runner import ProjectionRunners


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0  # this process, all threads: the Python side, whatever the machine's load

    def line(self, what: str, events: int) -> str:
        return (
            f"{what}: {events / self.wall:,.0f} events/s "
            f"({self.wall:.2f}s, {self.cpu:.2f}s CPU in this process)"
        )


@contextmanager
def timed() -> Iterator[Timing]:
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    yield timing
    timing.wall, timing.cpu = time.perf_counter() - wall, time.process_time() - cpu


def scan(store: PostgresEventStore, page_size: int, reader: PageReader = read_page) -> int:
    position = 0
    while page := reader(store, position, page_size):
        position = page[-1].position
    return position


def generate(url: str, events: int, shows: int) -> None:
    """The log, generated in this process and closed before the measuring child starts."""
    with generated_log(url, events, shows):
        pass


def measure(url: str, page_size: int) -> None:
    """In a process of its own, as `ticketblitz projections rebuild` runs (the generator's
    big heap would otherwise slow everything through the garbage collector)."""
    store = PostgresEventStore(url, pool_size=len(projection_kinds()) + 1)
    head = store.head_position()
    with timed() as took:
        events = scan(store, page_size)
    print(took.line("raw scan + decode of every event", events))
    topics: set[str] = set()
    for kind in projection_kinds():
        topics |= kind.topics()
    with timed() as took:
        events = scan(store, page_size, EventReader(topics))
    print(took.line("scan + decode of the events the read models use", events))

    with timed() as took:
        runners = ProjectionRunners(store, page_size=1000).start()
        caught_up = runners.wait_for(head, timeout=600)
        runners.stop()
    followers = len(projection_kinds())
    print(took.line(f"incremental runners from zero ({followers} followers)", head))
    assert caught_up, "the runners did not catch up"

    with timed() as took:
        report = Rebuild(store, None, page_size=page_size).run()
    print(took.line(f"rebuild --all ({report.replayed:,} events replayed)", report.replayed))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"({os.cpu_count()} CPUs, load average {load}: other work slows the wall times)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="server to create a database on")
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--shows", type=int, default=40)
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.page_size)
        return
    with fresh_database(args.database_url) as url:
        generate(url, args.events, args.shows)
        child = [sys.executable, "-m", "bench.rebuild", "--measure", url]
        subprocess.run([*child, "--page-size", str(args.page_size)], check=True)


if __name__ == "__main__":
    main()
