"""Benchmark `append`: events/s through `PostgresEventStore.save`, next to the raw limit of the
same PostgreSQL measured in the same run.

    .venv/bin/python -m bench.append [--batches 1,10,100,500] [--threads 1,8] [--events 12000]
        [--seconds 4]

Every case appends the same events: BookingPlaced events of new Booking aggregates (the larger
half of what a hold writes), `batch` events per transaction, from `threads` threads. Payloads are
built before the clock starts; a case stops after `--events` events or `--seconds`.

- es-save: `PostgresEventStore.save(*aggregates)` (the library's mapper + recorder: JSON
  encoding, `LOCK TABLE ... IN EXCLUSIVE MODE`, NOTIFY, INSERT ... unnest(composite[]) RETURNING)
- raw-insert: the same rows (already encoded) into a plain table with the same columns and
  indexes, one `INSERT ... SELECT FROM unnest(uuid[], int[], text[], bytea[])` per transaction
- raw-insert+lock: the same with the recorder's `LOCK TABLE ... IN EXCLUSIVE MODE` first
- raw-composite: the same rows passed as the library does, one array of its composite type
  (`unnest(%s::stored_event_type[])`): isolates psycopg's text dumping of composites
- raw-copy: the same rows by COPY, one COPY per transaction
- encode-only: the library's mapper turning the events into stored events (no database)
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg.types.composite import register_composite

from bench.common import (
    CpuMeter,
    bench_container,
    bench_stack,
    fmt,
    load_average,
    machine_info,
    print_table,
    ratio,
)
from bench.report import save
from domain.booking import Booking
from http_shell.container import Container

RAW_TABLE_SQL = """
DROP TABLE IF EXISTS bench_raw_events;
CREATE TABLE bench_raw_events (
    originator_id uuid NOT NULL,
    originator_version integer NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
);
CREATE UNIQUE INDEX bench_raw_events_notification ON bench_raw_events (notification_id);
"""
RAW_INSERT = (
    "INSERT INTO bench_raw_events (originator_id, originator_version, topic, state) "
    "SELECT * FROM unnest(%s::uuid[], %s::int[], %s::text[], %s::bytea[]) "
    "RETURNING notification_id"
)
RAW_COPY = "COPY bench_raw_events (originator_id, originator_version, topic, state) FROM STDIN"


def _bookings(count: int) -> list[Booking]:
    until = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=10)
    show = uuid4()
    return [
        Booking(
            booking_id=uuid4(),
            show_id=show,
            customer_id=uuid4(),
            seats=[f"A-{i % 200 + 1}-{n}" for n in range(1, 3)],
            general={},
            amount_cents=9000,
            currency="EUR",
            hold_expires_at=until,
            payment_method=None,
        )
        for i in range(count)
    ]


def _split(items: list[Any], batch: int, threads: int) -> list[list[list[Any]]]:
    """Per thread, its batches."""
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    return [batches[t::threads] for t in range(threads)]


def _run_threads(
    work: list[list[Any]],
    step: Callable[[list[Any], Any], object],
    seconds: float,
    connect: Callable[[], psycopg.Connection[Any]] | None = None,
) -> float:
    """Run `step(batch, conn)` over each thread's batches; returns events done per second."""
    done = [0] * len(work)
    barrier = threading.Barrier(len(work) + 1)
    deadline: list[float] = [0.0]

    def worker(i: int) -> None:
        conn = connect() if connect is not None else None
        try:
            barrier.wait()
            for batch in work[i]:
                if time.perf_counter() > deadline[0]:
                    break
                step(batch, conn)
                done[i] += len(batch)
        finally:
            if conn is not None:
                conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    time.sleep(0.05)
    started = time.perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def es_save(container: Container, batch: int, threads: int, events: int, seconds: float) -> float:
    work = _split(_bookings(events), batch, threads)
    return _run_threads(work, lambda b, _: container.store.save(*b), seconds)


def stored(container: Container, events: int) -> list[StoredEvent]:
    mapper = container.store.app.mapper
    return [mapper.to_stored_event(b.pending_events[0]) for b in _bookings(events)]


def raw_insert(
    url: str, rows: list[StoredEvent], batch: int, threads: int, seconds: float, lock: bool
) -> float:
    def step(b: list[StoredEvent], conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            if lock:
                conn.execute("LOCK TABLE bench_raw_events IN EXCLUSIVE MODE")
            conn.execute(
                RAW_INSERT,
                (
                    [e.originator_id for e in b],
                    [e.originator_version for e in b],
                    [e.topic for e in b],
                    [e.state for e in b],
                ),
            ).fetchall()

    return _run_threads(
        _split(rows, batch, threads),
        step,
        seconds,
        connect=lambda: psycopg.connect(url, autocommit=True),
    )


def raw_composite(
    container: Container,
    url: str,
    rows: list[StoredEvent],
    batch: int,
    threads: int,
    seconds: float,
) -> float:
    recorder: Any = container.store.app.recorder
    schema = f"{recorder.datastore.schema}." if recorder.datastore.schema else ""
    statement = (
        "INSERT INTO bench_raw_events (originator_id, originator_version, topic, state) "
        "SELECT originator_id, originator_version, topic, state "
        f"FROM unnest(%s::{schema}{recorder.stored_event_type_name}[]) RETURNING notification_id"
    )

    def step(b: list[StoredEvent], conn: psycopg.Connection[Any]) -> None:
        composites = [
            recorder.construct_pg_stored_event(
                e.originator_id, e.originator_version, e.topic, e.state
            )
            for e in b
        ]
        with conn.transaction():
            conn.execute(statement, (composites,)).fetchall()  # type: ignore[arg-type]

    def connect() -> psycopg.Connection[Any]:
        conn = psycopg.connect(url, autocommit=True)
        for info in recorder.datastore.psycopg_type_adapters.values():
            register_composite(info, conn)
        return conn

    return _run_threads(_split(rows, batch, threads), step, seconds, connect=connect)


def raw_copy(url: str, rows: list[StoredEvent], batch: int, threads: int, seconds: float) -> float:
    def step(b: list[StoredEvent], conn: psycopg.Connection[Any]) -> None:
        with conn.transaction(), conn.cursor() as cur, cur.copy(RAW_COPY) as copy:
            for e in b:
                copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))

    return _run_threads(
        _split(rows, batch, threads),
        step,
        seconds,
        connect=lambda: psycopg.connect(url, autocommit=True),
    )


def encode_only(container: Container, events: int) -> float:
    mapper = container.store.app.mapper
    pending = [b.pending_events[0] for b in _bookings(events)]
    started = time.perf_counter()
    for event in pending:
        mapper.to_stored_event(event)
    return len(pending) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,10,100,500", help="events per transaction")
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--events", type=int, default=12_000, help="events per case, at most")
    parser.add_argument("--seconds", type=float, default=4.0, help="per case, at most")
    args = parser.parse_args()
    batches = [int(x) for x in args.batches.split(",")]
    thread_counts = [int(x) for x in args.threads.split(",")]
    load_before = load_average()
    results: list[dict[str, Any]] = []
    with bench_stack(redis=False) as stack:
        container = bench_container(stack)
        try:
            machine = machine_info(stack.database_url)
            pm = stack.postmaster_pid()
            with psycopg.connect(stack.database_url, autocommit=True) as conn:
                conn.execute(RAW_TABLE_SQL)  # type: ignore[arg-type]
            encode_rate = encode_only(container, min(args.events, 20_000))
            es_save(container, 10, 1, 500, 2.0)  # warm-up: pools, prepared statements
            for threads in thread_counts:
                for batch in batches:
                    if threads > 1 and batch > 100:
                        continue  # 8 writers of 500-event batches say nothing new
                    row: dict[str, Any] = {"batch": batch, "threads": threads}
                    cpu = CpuMeter(pm).start()
                    row["es_save"] = es_save(container, batch, threads, args.events, args.seconds)
                    row["es_save_cpu"] = cpu.stop()
                    rows = stored(container, args.events)
                    url = stack.database_url
                    row["raw_insert"] = raw_insert(url, rows, batch, threads, args.seconds, False)
                    rows = stored(container, args.events)
                    row["raw_insert_lock"] = raw_insert(
                        url, rows, batch, threads, args.seconds, True
                    )
                    rows = stored(container, args.events)
                    try:
                        row["raw_composite"] = raw_composite(
                            container, url, rows, batch, threads, args.seconds
                        )
                    except Exception as error:  # relies on the library's internals
                        row["raw_composite"] = float("nan")
                        row["raw_composite_error"] = repr(error)
                    if batch >= 10:
                        rows = stored(container, args.events)
                        row["raw_copy"] = raw_copy(url, rows, batch, threads, args.seconds)
                    row["ratio_to_raw_insert"] = ratio(row["es_save"], row["raw_insert"])
                    results.append(row)
                    console_row(row)
        finally:
            container.close()
    print_table(
        "append: events/s (same events, same PostgreSQL, same run)",
        [
            "events/tx",
            "threads",
            "es save",
            "raw INSERT",
            "raw INSERT+LOCK",
            "raw composite[]",
            "raw COPY",
            "es / raw INSERT",
        ],
        [
            [
                r["batch"],
                r["threads"],
                fmt(r["es_save"]),
                fmt(r["raw_insert"]),
                fmt(r["raw_insert_lock"]),
                fmt(r["raw_composite"]),
                fmt(r.get("raw_copy", float("nan"))),
                f"{r['ratio_to_raw_insert']:.2f}",
            ]
            for r in results
        ],
    )
    print(f"encode only (mapper.to_stored_event, 1 thread): {encode_rate:,.0f} events/s")
    save(
        "append",
        args,
        machine,
        load_before,
        {"encode_only_events_per_s": encode_rate, "cases": results},
    )


def console_row(row: dict[str, Any]) -> None:
    print(
        f"  batch {row['batch']:>4} x {row['threads']} thread(s): es {row['es_save']:>9,.0f}/s"
        f"  raw {row['raw_insert']:>9,.0f}/s  raw+lock {row['raw_insert_lock']:>9,.0f}/s",
        flush=True,
    )


if __name__ == "__main__":
    main()
