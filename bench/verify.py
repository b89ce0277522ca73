"""Benchmark: `ticketblitz audit verify` over a log of N events.

    .venv/bin/python -m bench.verify --events 100000 [--database-url URL] [--page-size 10000]

Generates the log through the real command handlers (bench/workload.py: holds, payments,
confirmations, failures, expiries, cancellations, late payments, refunds) in a fresh database
(an embedded PostgreSQL in a temporary directory, or a new database on --database-url's
server, dropped afterwards), brings the sales read model up to the head, then measures in the
same run:

- a raw scan of the events table decoded with the application's mapper (what any follower
  pays before doing anything),
- the same scan with the audit's decoder,
- `audit seal` building the hash chain from nothing,
- `audit verify --root` (every aggregate rebuilt, every rule checked, the chain and the root,
  revenue against the sales read model): events/s by the clock, and per CPU second (the
  machine may be shared; the CPU figure is the steadier one).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

from audit.hash_chain import seal
from audit.revenue import SalesReadModel
from audit.verify import verify
from bench.common import fresh_database
from bench.workload import generated_log
from infra.decoding import Decoder, read_rows
from infra.event_store import PostgresEventStore
from infra.log_follower import read_page
from projections.registry import SALES
from projections.runner import ProjectionRunners

T = TypeVar("T")


def timed(run: Callable[[], T]) -> tuple[T, float, float]:
    """(what `run` returned, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = run()
    return count, time.perf_counter() - wall, time.process_time() - cpu


def scan_with_mapper(store: PostgresEventStore, page_size: int) -> int:
    position = count = 0
    while page := read_page(store, position, page_size):
        count += len(page)
        position = page[-1].position
    return count


def scan_with_audit_decoder(store: PostgresEventStore, page_size: int) -> int:
    decode = Decoder(store.app.mapper).event
    position = count = 0
    with store.connection() as conn:
        while rows := read_rows(conn, position, page_size):
            for row in rows:
                decode(row)
            count += len(rows)
            position = rows[-1][0]
    return count


def rates(label: str, count: int, wall: float, cpu: float) -> str:
    return (
        f"{label}: {count:,} events in {wall:.2f} s = {count / wall:,.0f} events/s "
        f"({count / cpu:,.0f} per CPU second)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="server to create a database on")
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--shows", type=int, default=40)
    args = parser.parse_args()

    with (
        fresh_database(args.database_url) as url,
        generated_log(url, args.events, args.shows) as (container, head),
    ):
        store = container.store
        sales = ProjectionRunners(store, [SALES], page_size=5000, poll_interval=0.05).start()
        caught_up = sales.wait_for(head, [SALES], timeout=600)
        sales.stop()
        print(f"sales read model at the head: {caught_up}")

        by_mapper = timed(lambda: scan_with_mapper(store, args.page_size))
        print(rates("raw scan + decode (app's mapper)", *by_mapper))
        by_audit = timed(lambda: scan_with_audit_decoder(store, args.page_size))
        print(rates("raw scan + decode (audit decoder)", *by_audit))
        root, wall, cpu = timed(lambda: seal(store))
        print(rates("audit seal: the hash chain from nothing", by_audit[0], wall, cpu))
        report, wall, cpu = timed(
            lambda: verify(store, root=root, revenue=SalesReadModel(), page_size=args.page_size)
        )
        label = "audit verify --root (rules + chain + root + revenue)"
        print(rates(label, report.events, wall, cpu))
        compared = (
            "not compared"
            if report.revenue is None
            else (f"compared at position {report.revenue.position:,}")
        )
        print(
            f"  {report.streams:,} aggregates rebuilt, {report.violation_count} violations, "
            f"root {'proved' if report.ok else 'NOT proved'}, revenue {compared}"
        )


if __name__ == "__main__":
    main()
