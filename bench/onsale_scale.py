"""`bench onsale --workers N | --shows S | --pay-share F`: the on-sale over HTTP with our API in
processes of its own (`ticketblitz serve --workers K`), next to the seed-style design.

    .venv/bin/python -m bench.onsale --workers 2 [--shows 20] [--pay-share 0.2] [--seats 500]
        [--clients 48] [--rounds 2]

Each round sells, with every process count K in {1, N} (the real app, `serve --workers K` on
the bench's PostgreSQL and Valkey) and then with the seed-style baseline (in this process, as
in `bench onsale`), the same fresh shows: one hot show, or S shows on sale at once with the fans
spread over them (fan i asks for show i mod S). Reported: aggregate holds/s and p50/p95/p99 of
every request, per process count, and zero oversell checked against the event store for every
show of every round. With `--pay-share F`, that share of our fans pays with each hold (the
README's walkthrough: `payment_method` pm_card_visa, the Stripe emulator) and polls the booking
until it reads "confirmed"; the payment saga and the read models run in this process. Reported:
p95 from the hold's answer to the confirmed read (target <= 300 ms while holds run >= 500/s).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from bench.baselines.seed_style import SeedStyleBookings, create_baseline_app
from bench.common import (
    BENCH_JWT_SECRET,
    BenchStack,
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
    verify_inventory,
    verify_read_model,
)
from bench.loadgen_run import run_loadgen
from bench.report import percentiles, print_targets, save, target
from ticketblitz.http_server import BackgroundServer, free_port

TARGET_CONFIRMED_P95_MS = 300.0
TARGET_HOLDS_WHILE_PAYING = 500.0
PAYMENT_METHOD = "pm_card_visa"
CLI = str(Path(sys.executable).parent / "ticketblitz")


class ServedApi:
    """`ticketblitz serve --workers K` (both APIs) on the bench's servers, in its own processes."""

    def __init__(self, stack: BenchStack, workers: int, log_dir: Path) -> None:
        self.workers = workers
        self.port = free_port()
        self.log = log_dir / f"serve-{workers}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETBLITZ_")}
        self.env.update(
            TICKETBLITZ_DATA_DIR=str(stack.data_dir / "app"),
            TICKETBLITZ_DATABASE_URL=stack.database_url,
            TICKETBLITZ_REDIS_URL=str(stack.endpoints.redis_url),
            TICKETBLITZ_JWT_SECRET=BENCH_JWT_SECRET,
            TICKETBLITZ_RATE_LIMIT_ENABLED="false",
            TICKETBLITZ_HOLD_MINUTES="60",
            TICKETBLITZ_LOG_LEVEL="WARNING",
        )
        if stack.endpoints.stripe_api_base:
            self.env["TICKETBLITZ_STRIPE_API_BASE"] = stack.endpoints.stripe_api_base
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServedApi:
        argv = [CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--workers", str(self.workers)]
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"serve --workers {self.workers} exited: see {self.log}")
            with suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"serve --workers {self.workers} did not answer: see {self.log}")

    def pids(self) -> list[int]:
        """The supervisor (when K > 1) and the API processes under it."""
        if self._process is None:
            return []
        return [self._process.pid, *_children(self._process.pid)]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)


def _children(ppid: int) -> list[int]:
    try:
        with open(f"/proc/{ppid}/task/{ppid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with suppress(OSError, IndexError, ValueError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=int, default=0, help="also our API in N processes (serve --workers N)"
    )
    parser.add_argument("--shows", type=int, default=1, help="shows on sale at once")
    parser.add_argument(
        "--pay-share", type=float, default=0.0, help="share of fans who pay with each hold"
    )
    parser.add_argument(
        "--saga-threads",
        type=int,
        default=16,
        help="the payment saga's threads (TICKETBLITZ_SAGA_THREADS; 4 by default elsewhere)",
    )


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.workers) or args.shows > 1 or args.pay_share > 0


def run(args: argparse.Namespace) -> dict[str, Any]:

    if not 0.0 <= args.pay_share <= 1.0:
        raise SystemExit("--pay-share must be between 0 and 1")
    counts = sorted({1, max(args.workers, 1)})
    layout = Layout.for_seats(args.seats, args.seats_per_row)
    load_before = load_average()
    rounds: list[dict[str, Any]] = []
    paying = args.pay_share > 0
    with bench_stack(redis=True, stripe=paying) as stack:
        container = bench_container(stack, saga_threads=args.saga_threads)
        running = None
        if paying:  # the payment saga (and the read models the fans poll) run here
            from ticketblitz.workers import build_workers

            running = build_workers(container).start()
        if container.read_side is not None and (paying or not args.no_read_model):
            container.read_side.start_runners()
        bookings = SeedStyleBookings(
            stack.database_url, pool_size=args.baseline_pool, mode=args.baseline_mode
        )
        bookings.setup()
        baseline = BackgroundServer(create_baseline_app(bookings, container.tokens)).start()
        served = [ServedApi(stack, k, stack.data_dir) for k in counts]
        try:
            for api in served:
                api.start()
            machine = machine_info(stack.database_url)
            tokens = register_customers(container, args.clients)

            def load(
                url: str, shows: list[UUID], seed: int, pay: float, pids: list[int]
            ) -> dict[str, Any]:
                before = _cpu_seconds(pids)
                result = run_loadgen(
                    url,
                    tokens,
                    shows[0],
                    layout,
                    seed,
                    args.chosen_ratio,
                    args.max_seconds,
                    stack.postmaster_pid(),
                    args.client,
                    extra={
                        "show_ids": [str(s) for s in shows],
                        "pay_share": pay,
                        "payment_method": PAYMENT_METHOD,
                    },
                )
                if pids:
                    used = _cpu_seconds(pids) - before
                    result["server_cpu_ms_per_request"] = 1000.0 * used / max(result["requests"], 1)
                    result["server_cores"] = used / max(result["seconds"], 1e-9)
                return result

            def checked(result: dict[str, Any], check: Any, shows: list[UUID]) -> dict[str, Any]:
                by_show: dict[UUID, list[Any]] = {s: [] for s in shows}
                for hold, show in zip(result.pop("_holds"), result.pop("_hold_shows"), strict=True):
                    by_show[UUID(show)].append(hold)
                result["shows"] = [str(s) for s in shows]
                per = [check(s, by_show[s]) for s in shows]
                result["oversell_check"] = {"ok": all(p["ok"] for p in per), "shows": per}
                return result

            def ours_check(show: UUID, holds: list[Any]) -> dict[str, Any]:
                return verify_inventory(container, show, layout.seats, holds)

            for r in range(args.rounds):
                row: dict[str, Any] = {"round": r + 1, "ours": {}}
                for api in served:
                    shows = [schedule_hot_show(container, layout) for _ in range(args.shows)]
                    result = load(api.url, shows, args.seed + r, args.pay_share, api.pids())
                    row["ours"][api.workers] = checked(result, ours_check, shows)
                if not args.no_baseline:
                    shows = [bookings.create_show(layout) for _ in range(args.shows)]
                    result = load(baseline.url, shows, args.seed + r, 0.0, [])
                    row["baseline"] = checked(result, bookings.verify, shows)
                rounds.append(row)
            read_model: dict[str, Any] = {"checked": False, "reason": "--no-read-model"}
            if not args.no_read_model:
                read_model = verify_read_model(
                    container,
                    [
                        (UUID(s), layout.seats)
                        for row in rounds
                        for o in row["ours"].values()
                        for s in o["shows"]
                    ],
                )
        finally:
            for api in served:
                api.stop()
            baseline.stop()
            bookings.close()
            if running is not None:
                running.stop()
            container.close()
    figures = report(args, counts, rounds, read_model)
    save(
        "onsale",
        args,
        machine,
        load_before,
        {**figures, "rounds": rounds, "read_model_check": read_model},
        name="onsale-scale",
    )
    return figures


def _total(results: Sequence[dict[str, Any]]) -> float:
    seconds = sum(r["seconds_to_sold_out"] for r in results)
    return sum(r["holds"] for r in results) / seconds if seconds else float("nan")


def _confirmed(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    waits = [w for r in results for w in r.get("confirmed", [])]
    missing: dict[str, int] = {}
    for r in results:
        for k, v in r.get("not_confirmed", {}).items():
            missing[k] = missing.get(k, 0) + v
    return {"count": len(waits), "latency": latency_summary(waits), "not_confirmed": missing}


def report(
    args: argparse.Namespace,
    counts: list[int],
    rounds: list[dict[str, Any]],
    read_model: dict[str, Any],
) -> dict[str, Any]:
    headers = [""]
    for k in counts:
        headers += [f"{k} proc holds/s", f"{k} proc p50/p95/p99 ms"]
    headers += ["seed holds/s", "seed p50/p95/p99 ms", f"ratio {counts[-1]} proc/seed", "oversell"]
    rows = []
    for row in rounds:
        cells: list[Any] = [f"round {row['round']}"]
        for k in counts:
            o = row["ours"][k]
            cells += [fmt(o["holds_per_s"]), percentiles(o["latency_all"])]
        b = row.get("baseline")
        best = row["ours"][counts[-1]]
        cells += [
            fmt(b["holds_per_s"]) if b else "-",
            percentiles(b["latency_all"]) if b else "-",
            fmt(ratio(best["holds_per_s"], b["holds_per_s"]), 1) + "x" if b else "-",
        ]
        ok = all(o["oversell_check"]["ok"] for o in row["ours"].values())
        ok = ok and (b is None or b["oversell_check"]["ok"])
        cells.append("ok" if ok else "FAIL")
        rows.append(cells)
    per_count = {k: [row["ours"][k] for row in rounds] for k in counts}
    base = [row["baseline"] for row in rounds if "baseline" in row]
    shows = f"{args.shows} shows at once" if args.shows > 1 else "one hot show"
    print_table(
        f"onsale: {shows} of {args.seats:,} seats, {args.clients} clients, our API in "
        f"{' and '.join(str(k) for k in counts)} process(es) (serve --workers) vs seed-style",
        headers,
        rows,
    )
    totals = {k: _total(v) for k, v in per_count.items()}
    p99 = {k: max(r["latency_all"]["p99_ms"] for r in v) for k, v in per_count.items()}
    figures: dict[str, Any] = {
        "process_counts": counts,
        "holds_per_s": totals,
        "worst_p99_ms": p99,
        "baseline_holds_per_s": _total(base) if base else None,
        "server_cpu_ms_per_request": {
            k: sum(r.get("server_cpu_ms_per_request", 0.0) for r in v) / len(v)
            for k, v in per_count.items()
        },
    }
    no_oversell = all(
        o["oversell_check"]["ok"] for row in rounds for o in row["ours"].values()
    ) and all(b["oversell_check"]["ok"] for b in base)
    targets = [
        target(
            "zero oversell (every show, every round)", "ok" if no_oversell else "FAIL", no_oversell
        )
    ]
    if len(counts) > 1:
        one, many = counts[0], counts[-1]
        targets.append(
            target(
                f"p99 with {many} processes <= with {one}",
                f"{fmt(p99[many], 1)} vs {fmt(p99[one], 1)} ms",
                p99[many] <= p99[one],
            )
        )
    if args.pay_share > 0:
        confirmed = {k: _confirmed(v) for k, v in per_count.items()}
        figures["hold_to_confirmed"] = confirmed
        print_table(
            f"hold -> confirmed (read), {args.pay_share:.0%} of fans pay with each hold",
            ["processes", "confirmed", "not confirmed", "p50/p95/p99 ms", "holds/s meanwhile"],
            [
                [
                    str(k),
                    str(c["count"]),
                    str(c["not_confirmed"] or "-"),
                    percentiles(c["latency"]),
                    fmt(totals[k]),
                ]
                for k, c in confirmed.items()
            ],
        )
        worst = max(c["latency"]["p95_ms"] for c in confirmed.values())
        held = min(totals.values())
        targets.append(
            target(
                f"p95 hold -> confirmed <= {TARGET_CONFIRMED_P95_MS:.0f} ms at >= "
                f"{TARGET_HOLDS_WHILE_PAYING:.0f} holds/s",
                f"{fmt(worst, 1)} ms at {fmt(held)} holds/s",
                worst <= TARGET_CONFIRMED_P95_MS and held >= TARGET_HOLDS_WHILE_PAYING,
            )
        )
    figures["zero_oversell"] = no_oversell
    print_targets(targets)
    if read_model.get("checked"):
        print(f"read model: {'ok' if read_model['ok'] else 'FAIL'}")
    return figures
