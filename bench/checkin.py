"""Benchmark `checkin`: the door of one big show, scanned from several gates at once through the
check-in commands (no HTTP), next to a plain `UPDATE tickets SET used = true WHERE ticket_id =
%s AND NOT used` design on the same database, in the same run.

    .venv/bin/python -m bench.checkin [--tickets 20000] [--gates 8] [--rescans 0.05]
        [--rounds 1] [--per-booking 100]

Setup (not timed): one show of `tickets` seats, its tickets issued into its door list by the
show's writer (`per-booking` tickets per booking), each ticket's secret signed by the
deployment's key. The baseline gets the same tickets as rows of a plain table.
A scan plan: every ticket scanned once, spread over `gates` gates; a share `rescans` of them
scanned a second time at the next gate at about the same moment (a fan trying twice, or two
gates racing), so double admissions would show.
Ours: `gates` threads, each calling `CheckinCommands.scan(...).result()` for its scans in turn
(verify the secret, then the show's writer admits: one TicketAdmitted event, committed in group
batches). Baseline: `gates` threads with a connection each: verify the secret the same way,
then the UPDATE (autocommit). Both: scans/s, p50/p99 latency, admissions answered, double
admissions (a ticket answered `admitted` twice, and the stored state checked after the run).
Targets: >= 3,000 scans/s, p99 <= 50 ms, zero double admissions.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg

from bench.common import (
    CpuMeter,
    Layout,
    bench_container,
    bench_stack,
    fmt,
    latency_summary,
    load_average,
    machine_info,
    print_table,
    ratio,
    schedule_hot_show,
)
from bench.report import print_targets, save, target
from commands.checkins import Scan, Scanner, ScanTicket
from commands.ports import TicketSigner
from commands.show_writer import ShowBatch
from domain.account import DOOR
from domain.door import ADMITTED, USED, DoorList
from domain.ids import door_list_id_for
from http_shell.container import Container
from infra.event_store import EVENTS_TABLE

TARGET_SCANS = 3_000.0
TARGET_P99_MS = 50.0

BASELINE_SQL = """
DROP TABLE IF EXISTS bench_tickets;
CREATE TABLE bench_tickets (
    ticket_id uuid PRIMARY KEY,
    show_id uuid NOT NULL,
    used boolean NOT NULL DEFAULT false,
    gate text,
    admitted_at timestamptz
);
"""


@dataclass(frozen=True)
class Planned:
    ticket_id: UUID
    secret: str
    gate: str
    scan_id: str


def issue_tickets(container: Container, show_id: UUID, layout: Layout, per_booking: int) -> int:
    """Issue a ticket per seat into the show's door list, `per_booking` per booking."""
    seats = layout.seat_ids()
    writer = container.writers.for_show(show_id)
    futures = []
    for start in range(0, len(seats), per_booking):
        chunk = seats[start : start + per_booking]
        holder, booking = uuid4(), uuid4()

        def decide(
            batch: ShowBatch, chunk: list[str] = chunk, b: UUID = booking, h: UUID = holder
        ) -> int:
            return len(batch.door_list().issue(b, h, "Bench Fan", chunk, {}))

        futures.append(writer.submit(decide))
    return sum(f.result(timeout=120)[0] for f in futures)


def plan_scans(
    signer: TicketSigner, show_id: UUID, door: DoorList, gates: int, rescans: float, seed: int
) -> list[list[Planned]]:
    """Per gate, its scans in order: every ticket once; a share scanned again at the next gate
    at the same place in its queue (so the two scans race)."""
    rng = random.Random(seed)
    tickets = [door.ticket(UUID(key)) for key in door.tickets]
    rng.shuffle(tickets)
    queues: list[list[Planned]] = [[] for _ in range(gates)]
    for i, ticket in enumerate(tickets):
        assert ticket is not None
        secret = signer.sign(ticket.ticket_id, show_id, ticket.place)
        gate = i % gates
        queues[gate].append(Planned(ticket.ticket_id, secret, f"gate-{gate}", uuid4().hex))
        if rng.random() < rescans:
            other = (gate + 1) % gates
            queues[other].append(Planned(ticket.ticket_id, secret, f"gate-{other}", uuid4().hex))
    return queues


@dataclass
class Tally:
    latencies: list[float]
    answers: Counter[str]
    admitted: Counter[UUID]  # admissions answered, per ticket
    seconds: float = 0.0

    def summary(self, cpu: dict[str, float]) -> dict[str, Any]:
        scans = sum(self.answers.values())
        doubles = sum(n - 1 for n in self.admitted.values() if n > 1)
        return {
            "scans": scans,
            "seconds": self.seconds,
            "scans_per_s": scans / self.seconds if self.seconds else 0.0,
            "latency": latency_summary(self.latencies),
            "answers": dict(self.answers),
            "tickets_admitted": len(self.admitted),
            "double_admissions_answered": doubles,
            "cpu": cpu,
        }


def run_gates(queues: list[list[Planned]], scan_one: Callable[[Planned], str]) -> Tally:
    """One thread per gate, each scanning its queue in turn; every answer and latency kept."""
    tally = Tally([], Counter(), Counter())
    lock = threading.Lock()
    start = threading.Barrier(len(queues) + 1)

    def gate(queue: list[Planned]) -> None:
        latencies: list[float] = []
        answers: Counter[str] = Counter()
        admitted: Counter[UUID] = Counter()
        start.wait()
        for planned in queue:
            began = time.perf_counter()
            try:
                answer = scan_one(planned)
            except Exception as error:
                answer = type(error).__name__
            latencies.append(time.perf_counter() - began)
            answers[answer] += 1
            if answer == ADMITTED:
                admitted[planned.ticket_id] += 1
        with lock:
            tally.latencies.extend(latencies)
            tally.answers.update(answers)
            tally.admitted.update(admitted)

    threads = [threading.Thread(target=gate, args=(q,), daemon=True) for q in queues]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    tally.seconds = time.perf_counter() - began
    return tally


def run_ours(
    container: Container, show_id: UUID, queues: list[list[Planned]], postmaster: int | None
) -> dict[str, Any]:
    commands = container.checkins
    assert commands is not None
    scanner = Scanner(uuid4(), DOOR)
    prepared = {
        p.scan_id: ScanTicket(
            show_id=show_id, scan=Scan(secret=p.secret, gate=p.gate, scan_id=p.scan_id)
        )
        for queue in queues
        for p in queue
    }

    def scan_one(planned: Planned) -> str:
        answer = commands.scan(prepared[planned.scan_id], scanner).result(timeout=60)
        return answer.result

    before = container.writers.stats()
    cpu = CpuMeter(postmaster).start()
    tally = run_gates(queues, scan_one)
    result = tally.summary(cpu.stop())
    after = container.writers.stats()
    batches = after["batches"] - before["batches"]
    result["commands_per_batch"] = (
        (after["commands"] - before["commands"]) / batches if batches else 0
    )
    result["stored"] = check_ours(container, show_id, tally)
    return result


def check_ours(container: Container, show_id: UUID, tally: Tally) -> dict[str, Any]:
    """From the store, not the writer's cache: one TicketAdmitted per admitted ticket, and the
    tickets used are exactly those answered `admitted`."""
    door_id = door_list_id_for(show_id)
    door = container.store.get(door_id, DoorList)
    used = {UUID(key) for key, t in door.tickets.items() if t.status == USED}
    with container.store.connection() as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {EVENTS_TABLE} WHERE originator_id = %s AND topic LIKE %s",
            (door_id, "%TicketAdmitted"),
        ).fetchone()
    events = row[0] if row else 0
    return {
        "tickets_used": len(used),
        "admitted_events": events,
        "matches_answers": used == set(tally.admitted),
        "ok": events == len(used) and used == set(tally.admitted),
    }


def run_baseline(
    database_url: str,
    signer: TicketSigner,
    show_id: UUID,
    queues: list[list[Planned]],
    postmaster: int | None,
) -> dict[str, Any]:
    tickets = {p.ticket_id for queue in queues for p in queue}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(BASELINE_SQL)
        copying = "COPY bench_tickets (ticket_id, show_id) FROM STDIN"
        with conn.cursor() as cur, cur.copy(copying) as copy:
            for ticket_id in tickets:
                copy.write_row((ticket_id, show_id))
        conn.execute("VACUUM ANALYZE bench_tickets")
    connections = [psycopg.connect(database_url, autocommit=True) for _ in queues]
    local = threading.local()
    pool = iter(connections)
    pool_lock = threading.Lock()

    def scan_one(planned: Planned) -> str:
        conn = getattr(local, "conn", None)
        if conn is None:
            with pool_lock:
                conn = local.conn = next(pool)
        signed = signer.verify(planned.secret)
        if signed.show_id != show_id:
            return "wrong-show"
        cur = conn.execute(
            "UPDATE bench_tickets SET used = true, gate = %s, admitted_at = %s "
            "WHERE ticket_id = %s AND NOT used",
            (planned.gate, datetime.now(UTC), signed.ticket_id),
        )
        return ADMITTED if cur.rowcount == 1 else "already-admitted"

    try:
        cpu = CpuMeter(postmaster).start()
        tally = run_gates(queues, scan_one)
        result = tally.summary(cpu.stop())
    finally:
        for conn in connections:
            conn.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        used = {r[0] for r in conn.execute("SELECT ticket_id FROM bench_tickets WHERE used")}
    result["stored"] = {
        "tickets_used": len(used),
        "matches_answers": used == set(tally.admitted),
        "ok": used == set(tally.admitted),
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tickets", type=int, default=20_000, help="tickets of the show")
    parser.add_argument("--gates", type=int, default=8, help="gates scanning at once (threads)")
    parser.add_argument("--rescans", type=float, default=0.05, help="share scanned twice")
    parser.add_argument("--rounds", type=int, default=1, help="a fresh show per round")
    parser.add_argument("--per-booking", type=int, default=100, help="tickets per booking")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.tickets < 1 or args.gates < 1 or not 0 <= args.rescans <= 1 or args.rounds < 1:
        parser.error("--tickets, --gates and --rounds must be >= 1, --rescans in [0, 1]")

    load_before = load_average()
    ours_rounds: list[dict[str, Any]] = []
    base_rounds: list[dict[str, Any]] = []
    with bench_stack(redis=False) as stack:
        container = bench_container(stack)
        try:
            signer = container.ticket_signer
            assert signer is not None
            machine = machine_info(stack.database_url)
            postmaster = stack.postmaster_pid()
            for r in range(args.rounds):
                layout = Layout.for_seats(args.tickets)
                show_id = schedule_hot_show(container, layout, title=f"Door {r + 1}")
                issued = issue_tickets(container, show_id, layout, args.per_booking)
                door = container.store.get(door_list_id_for(show_id), DoorList)
                queues = plan_scans(signer, show_id, door, args.gates, args.rescans, args.seed + r)
                ours = run_ours(container, show_id, queues, postmaster)
                ours["tickets"] = issued
                ours_rounds.append(ours)
                base = run_baseline(stack.database_url, signer, show_id, queues, postmaster)
                base["tickets"] = issued
                base_rounds.append(base)
        finally:
            container.close()
    report(args, machine, load_before, ours_rounds, base_rounds)


def _double(result: dict[str, Any]) -> int:
    """Double admissions: answered twice, or the stored state disagreeing with the answers."""
    return int(result["double_admissions_answered"]) + (0 if result["stored"]["ok"] else 1)


def report(
    args: argparse.Namespace,
    machine: dict[str, Any],
    load_before: list[float],
    ours_rounds: list[dict[str, Any]],
    base_rounds: list[dict[str, Any]],
) -> None:
    rows = []
    for i, (o, b) in enumerate(zip(ours_rounds, base_rounds, strict=True), start=1):
        for name, r in (("ours (writer)", o), ("UPDATE ... NOT used", b)):
            rows.append(
                [
                    f"round {i}: {name}",
                    fmt(r["scans"]),
                    fmt(r["scans_per_s"]),
                    fmt(r["latency"]["p50_ms"], 2),
                    fmt(r["latency"]["p99_ms"], 2),
                    fmt(r["answers"].get(ADMITTED, 0)),
                    fmt(r["answers"].get("already-admitted", 0)),
                    fmt(_double(r)),
                    "ok" if r["stored"]["ok"] else "FAIL",
                ]
            )
    ours = sum(o["scans"] for o in ours_rounds) / sum(o["seconds"] for o in ours_rounds)
    base = sum(b["scans"] for b in base_rounds) / sum(b["seconds"] for b in base_rounds)
    p99 = max(o["latency"]["p99_ms"] for o in ours_rounds)
    doubles = sum(_double(o) for o in ours_rounds)
    base_doubles = sum(_double(b) for b in base_rounds)
    print_table(
        f"checkin: {args.tickets:,} tickets, {args.gates} gates, {args.rescans:.0%} scanned "
        f"twice; ours {fmt(ours)} scans/s vs UPDATE {fmt(base)} scans/s "
        f"({fmt(ratio(ours, base), 2)}x)",
        [
            "",
            "scans",
            "scans/s",
            "p50 ms",
            "p99 ms",
            "admitted",
            "already",
            "double admissions",
            "store check",
        ],
        rows,
    )
    print(f"checkin: scans/s ours {ours:.0f} baseline {base:.0f} double admissions {doubles}")
    print_targets(
        [
            target(f">= {TARGET_SCANS:,.0f} scans/s", fmt(ours), ours >= TARGET_SCANS),
            target(f"p99 <= {TARGET_P99_MS:.0f} ms", fmt(p99, 1), p99 <= TARGET_P99_MS),
            target("zero double admissions", fmt(doubles), doubles == 0),
        ]
    )
    save(
        "checkin",
        args,
        machine,
        load_before,
        {
            "ours_scans_per_s": ours,
            "baseline_scans_per_s": base,
            "ratio": ratio(ours, base),
            "ours_p99_ms": p99,
            "double_admissions": doubles,
            "baseline_double_admissions": base_doubles,
            "rounds": [
                {"ours": o, "baseline": b} for o, b in zip(ours_rounds, base_rounds, strict=True)
            ],
            "targets": {"scans_per_s": TARGET_SCANS, "p99_ms": TARGET_P99_MS},
        },
    )


if __name__ == "__main__":
    main()
