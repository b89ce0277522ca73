"""Benchmark `reads`: the seat map under the surge, and its live feed during a sell-out.

    .venv/bin/python -m bench.reads [--seats 500] [--clients 50] [--seconds 10]
        [--sse-clients 2000] [--rate 500] [--sse-seats N] [--writers 32] [--read-writes 20]

One embedded stack (PostgreSQL 16 and Valkey), the real app (`ticketblitz.web.create_app`,
projection runners on, rate limits off) served by uvicorn in this process; every client in
processes of their own.

1. Seat-map reads: `--clients` keep-alive clients (bench/read_clients.py) refresh
   `GET /api/v1/shows/{id}/seats` of a `--seats`-seat show for `--seconds`, each sending
   `If-None-Match` with the last ETag it got, while a writer (bench/hold_writer.py) holds seats
   at `--read-writes` holds/s. Next to it, in the same run and with the same load, the baseline
   (bench/baselines/uncached_reads.py): the same seat map queried straight from PostgreSQL per
   request, no cache, no ETag. Target: >= 5,000 conditional requests/s.
2. SSE during a sell-out: `--sse-clients` clients (bench/sse_clients.py) on
   `GET /shows/{id}/seats/events` while the writer holds one seat per request at `--rate`
   holds/s until the show (`--sse-seats`, by default rate x seconds) is sold out. Every
   client's events are checked against the event log (bench/sse_check.py): zero lost,
   duplicated, out-of-order or wrong changes, and each client ends on the final seat map; any
   other count fails the run (exit status 1). Latency from a seat's change to its delivery by
   two conservative clocks (both before the commit): the event's timestamp (taken when the
   hold is decided) and when the hold's request was sent. Target: p99 <= 1 s (event clock).
Prints the tables and writes JSON to bench/results/reads-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.baselines.uncached_reads import UncachedSeatMaps, create_uncached_app
from bench.clients import ROOT
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
    register_customers,
    schedule_hot_show,
)
from bench.report import percentiles, print_targets, save, target
from bench.sse_check import Checker, LogSeats
from domain.ids import inventory_id_for
from http_shell.container import Container
from projections.read_side import ReadSide
from projections.registry import SEAT_MAP
from ticketblitz.http_server import BackgroundServer
from ticketblitz.web import create_app
from web.live import load_state

TARGET_READS = 5_000.0
TARGET_SSE_P99_MS = 1_000.0
TARGET_HOLDS = 500.0


class ClientProcess:
    """A client module (`python -m bench.MODULE CONFIG RESULT`) in a process of its own."""

    def __init__(self, module: str, config: dict[str, Any], pipes: bool = False) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tbr-", dir="/tmp")
        tmp = Path(self._tmp.name)
        self._result = tmp / "result.json"
        (tmp / "config.json").write_text(json.dumps(config))
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"bench.{module}", str(tmp / "config.json"), str(self._result)],
            cwd=ROOT,
            stdin=subprocess.PIPE if pipes else None,
            stdout=subprocess.PIPE if pipes else None,
            text=True,
        )

    def wait_for_line(self, expected: str) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != expected:
            raise RuntimeError(f"client process said {line!r}, not {expected!r}")

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            if self.process.wait(timeout) != 0:
                raise RuntimeError(f"client process failed ({self.process.returncode})")
            found: dict[str, Any] = json.loads(self._result.read_text())
            return found
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._tmp.cleanup()


def wait_for_seat_map(read: ReadSide, show_id: UUID, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while load_state(read, show_id) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the seat map did not show {show_id} within {timeout}s")
        time.sleep(0.05)


def writer_config(
    url: str, show_id: UUID, tokens: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    return {"url": url, "show_id": str(show_id), "tokens": tokens, "rate": rate, "seconds": seconds}


def hold_summary(raw: dict[str, Any]) -> dict[str, Any]:
    holds = raw["holds"]
    return {
        "holds": len(holds),
        "seconds": raw["seconds"],
        "holds_per_s": len(holds) / raw["seconds"] if raw["seconds"] else 0.0,
        "statuses": raw["statuses"],
        "sold_out": raw["sold_out"],
        "latency": latency_summary(raw["latencies"]),
    }


# --- 1. seat-map reads ------------------------------------------------------------------------


def read_round(
    url: str, show_id: UUID, writer_url: str, tokens: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    writer = ClientProcess(
        "hold_writer", writer_config(writer_url, show_id, tokens, args.read_writes, args.seconds)
    )
    config = {
        "url": url,
        "path": f"/api/v1/shows/{show_id}/seats",
        "clients": args.clients,
        "seconds": args.seconds,
    }
    readers = ClientProcess("read_clients", config)
    cpu = CpuMeter().start()
    raw = readers.result(args.seconds + 120)
    used = cpu.stop()
    written = hold_summary(writer.result(args.seconds + 120))
    requests, seconds = raw["requests"], raw["seconds"]
    statuses = raw["statuses"]
    return {
        "requests": requests,
        "seconds": seconds,
        "requests_per_s": requests / seconds if seconds else 0.0,
        "latency": latency_summary(raw["latencies"]),
        "statuses": statuses,
        "not_modified": statuses.get("304", 0),
        "tagged_200s": raw["tagged_200s"],
        "mb_per_s": raw["body_bytes"] / seconds / 1e6 if seconds else 0.0,
        "errors": raw["errors"],
        "writer": written,
        "server_cpu_ms_per_request": 1000.0 * used["this_process_cpu_s"] / requests
        if requests
        else 0.0,
        "cpu": used,
    }


# --- 2. SSE during a sell-out -----------------------------------------------------------------


def log_events(container: Container) -> Iterator[tuple[int, Any]]:
    position = 0
    while page := container.store.events_after(position, 2000):
        yield from page
        position = page[-1][0]


def sse_round(
    container: Container, url: str, tokens: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    read = container.read_side
    assert read is not None
    seats = args.sse_seats or int(args.rate * args.seconds)
    layout = Layout.for_seats(seats)
    show_id = schedule_hot_show(container, layout, "Sell-out with live seat maps")
    wait_for_seat_map(read, show_id)
    clients = ClientProcess(
        "sse_clients",
        {"url": url, "show_id": str(show_id), "clients": args.sse_clients, "grace_seconds": 60},
        pipes=True,
    )
    started = time.perf_counter()
    clients.wait_for_line("ready")
    connect_seconds = time.perf_counter() - started
    cpu = CpuMeter().start()
    # The writer gets time to sell out, should holds run slower than asked.
    writer = ClientProcess(
        "hold_writer", writer_config(url, show_id, tokens, args.rate, args.seconds * 3 + 10)
    )
    written = writer.result(args.seconds * 3 + 130)
    used = cpu.stop()
    head = container.store.head_position()
    if read.positions.wait([SEAT_MAP], head, timeout=120) is None:
        raise RuntimeError(f"the seat map did not reach {head}")
    sent_at = {UUID(str(b)).hex: sent for b, _, sent, _ in written["holds"]}
    log = LogSeats.replay(
        layout.seat_ids(), log_events(container), inventory_id_for(show_id), sent_at
    )
    clients.tell(str(log.last_position))
    raw = clients.result(120)
    checker = Checker(log, raw["payloads"])
    verdict = checker.check(raw["clients"], log.last_position)
    final = load_state(read, show_id)
    read_model_agrees = final is not None and final.seats == log.state(final.position)
    events = verdict.events
    return {
        "show_id": str(show_id),
        "seats": seats,
        "clients": args.sse_clients,
        "connect_seconds": connect_seconds,
        "writer": hold_summary(written),
        "events_received": events,
        "distinct_events": len(raw["payloads"]),
        "verdict": {k: v for k, v in vars(verdict).items()},
        "ok": verdict.ok and read_model_agrees,
        "read_model_agrees_with_log": read_model_agrees,
        "client_errors": sum(len(c["errors"]) for c in raw["clients"]),
        "server_cores": used["this_process_cores"],
        "cpu": used,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=500, help="seats of the seat-map show")
    parser.add_argument("--clients", type=int, default=50, help="seat-map readers")
    parser.add_argument("--seconds", type=float, default=10.0, help="per read round; SSE sell-out")
    parser.add_argument("--read-writes", type=float, default=20.0, help="holds/s during reads")
    parser.add_argument("--sse-clients", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500.0, help="holds/s during the sell-out")
    parser.add_argument("--sse-seats", type=int, default=0, help="default: rate x seconds")
    parser.add_argument("--writers", type=int, default=32, help="writer connections")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-reads", action="store_true", help="only the SSE part")
    parser.add_argument("--no-sse", action="store_true", help="only the seat-map reads")
    args = parser.parse_args()

    load_before = load_average()
    reads: dict[str, Any] = {}
    sse: dict[str, Any] | None = None
    with bench_stack(redis=True) as stack:
        container = bench_container(stack)
        read = container.read_side
        assert read is not None
        read.start_runners()
        server = BackgroundServer(create_app(container)).start()
        seat_maps = UncachedSeatMaps(stack.database_url)
        baseline = BackgroundServer(create_uncached_app(seat_maps)).start()
        try:
            machine = machine_info(stack.database_url)
            tokens = register_customers(container, args.writers)
            if not args.no_reads:
                designs = [("ours", server.url)]
                if not args.no_baseline:
                    designs.append(("baseline", baseline.url))
                for name, url in designs:
                    show_id = schedule_hot_show(container, Layout.for_seats(args.seats))
                    wait_for_seat_map(read, show_id)
                    reads[name] = read_round(url, show_id, server.url, tokens, args)
            if not args.no_sse:
                sse = sse_round(container, server.url, tokens, args)
        finally:
            baseline.stop()
            server.stop()
            seat_maps.close()
            container.close()
    ok = report(args, machine, load_before, reads, sse)
    sys.exit(0 if ok else 1)


def report(
    args: argparse.Namespace,
    machine: dict[str, Any],
    load_before: list[float],
    reads: dict[str, Any],
    sse: dict[str, Any] | None,
) -> bool:
    rows = []
    for name, r in reads.items():
        rows.append(
            [
                name,
                fmt(r["requests_per_s"]),
                percentiles(r["latency"]),
                fmt(r["statuses"].get("200", 0)),
                fmt(r["not_modified"]),
                "yes" if r["tagged_200s"] else "no",
                fmt(r["mb_per_s"], 1),
                fmt(r["server_cpu_ms_per_request"], 3),
                fmt(r["writer"]["holds"]),
            ]
        )
    ours = reads.get("ours", {}).get("requests_per_s", float("nan"))
    base = reads.get("baseline", {}).get("requests_per_s", float("nan"))
    if reads:
        print_table(
            f"reads: GET /api/v1/shows/{{id}}/seats ({args.seats} seats), {args.clients} "
            f"keep-alive clients with If-None-Match, {fmt(args.seconds, 0)} s, a writer holding "
            f"{fmt(args.read_writes, 0)} seats/s; baseline: uncached from PostgreSQL",
            [
                "",
                "requests/s",
                "p50/p95/p99 ms",
                "200s",
                "304s",
                "ETag",
                "MB/s",
                "server ms CPU/req",
                "holds",
            ],
            rows,
        )
    targets = []
    if reads:
        targets.append(
            target(f">= {TARGET_READS:,.0f} seat-map requests/s", fmt(ours), ours >= TARGET_READS)
        )
        if "baseline" in reads:
            targets.append(["ours / uncached baseline", fmt(ratio(ours, base), 1) + "x", "-"])
    ok = True
    if sse is not None:
        v = sse["verdict"]
        w = sse["writer"]
        decided, sent = v["latency_decided"], v["latency_sent"]
        print_table(
            f"SSE during a sell-out: {sse['clients']:,} clients on /shows/{{id}}/seats/events, "
            f"{sse['seats']:,} seats, holds asked at {fmt(args.rate, 0)}/s",
            [
                "holds/s",
                "deliveries",
                "commit->client p50/p95/p99 ms (decided)",
                "(request sent)",
                "lost",
                "duplicated",
                "out of order",
                "wrong",
                "behind at end",
                "reconnects",
                "server cores",
            ],
            [
                [
                    fmt(w["holds_per_s"]),
                    fmt(v["deliveries"]),
                    percentiles(decided, 0),
                    percentiles(sent, 0),
                    v["lost"],
                    v["duplicated"],
                    v["out_of_order"],
                    v["wrong"] + v["available_wrong"] + v["final_mismatch"],
                    v["not_caught_up"],
                    v["reconnects"],
                    fmt(sse["server_cores"], 2),
                ]
            ],
        )
        ok = bool(sse["ok"])
        targets += [
            target(
                f">= {TARGET_HOLDS:,.0f} holds/s during the sell-out",
                fmt(w["holds_per_s"]),
                w["holds_per_s"] >= TARGET_HOLDS,
            ),
            target(
                f"SSE p99 <= {TARGET_SSE_P99_MS:,.0f} ms",
                f"{fmt(decided['p99_ms'], 0)} (decided) / {fmt(sent['p99_ms'], 0)} (sent)",
                decided["p99_ms"] <= TARGET_SSE_P99_MS,
            ),
            target(
                "zero lost/duplicated/out-of-order SSE changes",
                "ok" if ok else "FAIL",
                ok,
            ),
        ]
    print_targets(targets)
    save(
        "reads",
        args,
        machine,
        load_before,
        {
            "reads": {k: {**v} for k, v in reads.items()},
            "ours_requests_per_s": ours,
            "baseline_requests_per_s": base,
            "sse": sse,
            "sse_ok": ok,
            "targets": {
                "requests_per_s": TARGET_READS,
                "sse_p99_ms": TARGET_SSE_P99_MS,
                "holds_per_s": TARGET_HOLDS,
            },
        },
    )
    return ok


if __name__ == "__main__":
    main()
