"""Benchmark `queue`: the waiting room of an announced on-sale, over HTTP.

    .venv/bin/python -m bench.queue [--joins 100000] [--clients 64] [--rate 300]
        [--baseline-joins 20000] [--minutes 10]

The real app (`bootstrap` with a clock this benchmark sets, embedded PostgreSQL 16 and Valkey,
rate limits off, read-model runners on: the waiting room reads the show from the catalog) is
served by uvicorn in this process; the load generator is a separate process (this module with
`--client`: asyncio + httpx, one keep-alive connection per client).

1. `--joins` distinct accounts (stored in bulk, their bearer tokens minted with the app's token
   service) join the queue of one show before its opening: joins/s and latency. Then a sample
   joins again (the same token back, 200).
2. The baseline: the same app (its middleware), the same authentication (`current_principal`:
   token check and one read of the account), the same load generator, with the naive queue
   storage instead of ours: a PostgreSQL table, one INSERT per join and the position as a
   count(*) of earlier rows (first come, first served). It runs `--baseline-joins` joins (fewer
   by default: its count(*) grows with the table, so a smaller run flatters it).
3. At the opening (the clock set to `sale_opens_at`) every token's status is read (GET: reads/s):
   every position 1..N exactly once, and Spearman's rank correlation between arrival order (the
   order the joins were answered) and admission order (|rho| must stay below
   max(0.05, 4/sqrt(N-1)), 4 standard deviations of a random order; the baseline's order is its
   arrival order: rho 1).
4. The rate: the clock steps one minute at a time for `--minutes` minutes; after each step the
   number of fans let in is found over HTTP (binary search on the positions read at the opening,
   each probe a GET: is this slot admitted?), and each minute's admissions must be within 5 % of
   `--rate` (the early queue is long enough not to run dry).
Prints the table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
from fastapi.concurrency import run_in_threadpool
from psycopg_pool import ConnectionPool

from bench.clients import ROOT
from bench.common import (
    CpuMeter,
    bench_settings,
    bench_stack,
    fmt,
    latency_summary,
    load_average,
    machine_info,
    print_table,
    ratio,
    show_start,
    write_results,
)
from bench.loadgen import RawConnection
from commands.models import GeneralSection, PriceTier, ScheduleShow
from domain.account import Account
from domain.waiting_room import rank_correlation
from http_shell.container import Container
from http_shell.deps import CurrentUser
from infra.passwords import Argon2PasswordHasher
from ticketblitz.bootstrap import bootstrap
from ticketblitz.http_server import BackgroundServer
from ticketblitz.web import create_app

RATE_TOLERANCE = 0.05
ACCOUNT_BATCH = 1000
WARM_UP = 200
NAIVE_PREFIX = "/bench/naive"


class SetClock:
    """The app's clock: the real time until the benchmark sets it."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


def fairness_bound(n: int) -> float:
    """|rho| a random order stays under (4 standard deviations of Spearman's rho under n)."""
    return max(0.05, 4.0 / math.sqrt(max(n - 1, 1)))


# --- the load generator (its own process) ----------------------------------------------------


async def _client_run(config: dict[str, Any]) -> dict[str, Any]:
    """Each request [method, path, bearer] once, by `clients` workers; answers in order of
    completion: [index, status, body fields asked for]."""
    requests: list[list[str]] = config["requests"]
    fields: list[str] = config["fields"]
    next_index = 0
    answered: list[list[Any]] = []
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal next_index
        # The minimal keep-alive client of bench/loadgen.py: httpx would cost the load
        # generator more CPU per request than the server spends (2 cores for both).
        http = RawConnection(config["url"], timeout=60)
        try:
            while next_index < len(requests):
                index = next_index
                next_index += 1
                method, path, bearer = requests[index]
                started = time.perf_counter()
                status, body = await http.request(
                    method, path, None, {"Authorization": f"Bearer {bearer}"}
                )
                latencies.append(time.perf_counter() - started)
                found = body if isinstance(body, dict) else {}
                answered.append([index, status, *(found.get(f) for f in fields)])
        finally:
            await http.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(config["clients"])))
    return {"seconds": time.perf_counter() - started, "answered": answered, "latencies": latencies}


def run_clients(
    url: str, requests: list[list[str]], clients: int, fields: list[str]
) -> dict[str, Any]:
    """The load generator in its own process; its result and this process's CPU use."""
    config = {"url": url, "requests": requests, "clients": clients, "fields": fields}
    with tempfile.TemporaryDirectory(prefix="tbq-", dir="/tmp") as tmp:
        config_path, result_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
        config_path.write_text(json.dumps(config))
        cpu = CpuMeter().start()
        subprocess.run(
            [sys.executable, "-m", "bench.queue", "--client", str(config_path), str(result_path)],
            cwd=ROOT,
            check=True,
        )
        used = cpu.stop()
        result: dict[str, Any] = json.loads(result_path.read_text())
    n = len(result["answered"])
    result["per_s"] = n / result["seconds"] if result["seconds"] else 0.0
    result["latency"] = latency_summary(result.pop("latencies"))
    result["server_cpu_ms_per_request"] = 1000.0 * used["this_process_cpu_s"] / n if n else 0.0
    return result


# --- the stack and the fans ------------------------------------------------------------------


def make_fans(container: Container, count: int) -> list[str]:
    """`count` customers stored in bulk (one password hash for all: nobody logs in), and
    their bearer tokens, minted by the app's token service."""
    password_hash = Argon2PasswordHasher(1, 1024).hash("bench-password")
    run = f"{int(time.time() * 1000) % 10**9}"
    tokens: list[str] = []
    for start in range(0, count, ACCOUNT_BATCH):
        accounts = [
            Account(
                email=f"q-{run}-{i}@bench.ticketblitz.dev",
                name=f"Fan {i}",
                password_hash=password_hash,
                role="customer",
            )
            for i in range(start, min(count, start + ACCOUNT_BATCH))
        ]
        container.store.save(*accounts)
        tokens.extend(container.tokens.issue(a.id, "customer") for a in accounts)
    return tokens


def schedule_queued_show(container: Container, rate: int) -> tuple[UUID, datetime]:
    opens = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    command = ScheduleShow(
        title="The on-sale",
        category="rock",
        venue="Bench Arena",
        starts_at=show_start(),
        currency="EUR",
        price_tiers=[PriceTier(code="GA", price_cents=4500)],
        sections=[GeneralSection(code="GA", kind="general", tier="GA", capacity=50_000)],
        sale_opens_at=opens,
        queue_admits_per_minute=rate,
    )
    show_id = container.shows.schedule_show(command).show_id
    assert container.read_side is not None
    deadline = time.monotonic() + 60
    while container.read_side.models.show(show_id) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the catalog did not show the show within 60 s")
        time.sleep(0.05)
    return show_id, opens


@contextmanager
def baseline_app(container: Container, database_url: str) -> Iterator[str]:
    """The naive queue behind the same framework and authentication: a table, an INSERT per
    join and count(*) of earlier rows as the position (first come, first served)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_queue (seq bigserial PRIMARY KEY, show_id uuid "
            "NOT NULL, account_id uuid NOT NULL, UNIQUE (show_id, account_id))"
        )
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        database_url, min_size=4, max_size=16, kwargs={"autocommit": True}, open=True
    )
    # The whole app (its middleware: request ids, metrics, ...) with one more route, so both
    # designs pay the same per-request cost around the queue itself.
    app = create_app(container)

    def join(show_id: UUID, account_id: UUID) -> dict[str, Any]:
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO bench_queue (show_id, account_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (show_id, account_id),
            )
            row = conn.execute(
                "SELECT seq FROM bench_queue WHERE show_id = %s AND account_id = %s",
                (show_id, account_id),
            ).fetchone()
            assert row is not None
            counted = conn.execute(
                "SELECT count(*) FROM bench_queue WHERE show_id = %s AND seq <= %s",
                (show_id, row[0]),
            ).fetchone()
            assert counted is not None
        return {"token": str(row[0]), "position": counted[0]}

    @app.post(NAIVE_PREFIX + "/shows/{show_id}/queue", status_code=201)
    async def naive_join(show_id: UUID, user: CurrentUser) -> dict[str, Any]:
        return await run_in_threadpool(join, show_id, user.account_id)

    server = BackgroundServer(app).start()
    try:
        yield server.url
    finally:
        server.stop()
        pool.close()


# --- the checks ------------------------------------------------------------------------------


def admitted_now(http: httpx.Client, path: str, by_slot: list[tuple[str, str]]) -> int:
    """How many are let in, found over HTTP: the largest slot whose GET says `admitted`
    (slots are let in in order; `by_slot[k-1]` is slot k's (token, bearer))."""
    low, high = 0, len(by_slot)  # slots 1..low are in; high+1.. are not
    while low < high:
        middle = (low + high + 1) // 2
        token, bearer = by_slot[middle - 1]
        r = http.get(f"{path}/{token}", headers={"Authorization": f"Bearer {bearer}"})
        r.raise_for_status()
        if r.json()["admitted"]:
            low = middle
        else:
            high = middle - 1
    return low


def run(args: argparse.Namespace) -> dict[str, Any]:
    clock = SetClock()
    with bench_stack(redis=True) as stack:
        container = bootstrap(bench_settings(stack), clock=clock)
        try:
            assert container.read_side is not None
            container.read_side.start_runners()
            show_id, opens = schedule_queued_show(container, args.rate)
            fans = make_fans(container, max(args.joins, args.baseline_joins))
            server = BackgroundServer(create_app(container)).start()
            try:
                return measure(
                    args, container, stack.database_url, server.url, show_id, opens, fans, clock
                )
            finally:
                server.stop()
        finally:
            container.close()


def measure(
    args: argparse.Namespace,
    container: Container,
    database_url: str,
    url: str,
    show_id: UUID,
    opens: datetime,
    fans: list[str],
    clock: SetClock,
) -> dict[str, Any]:
    path = f"/api/v1/shows/{show_id}/queue"
    clock.at = opens - timedelta(hours=1)
    # Warm-up (both designs alike): the first fans join a throwaway queue first.
    warm = [b for b in fans[:WARM_UP]]
    warm_show, _ = schedule_queued_show(container, args.rate)
    run_clients(url, [["POST", f"/api/v1/shows/{warm_show}/queue", b] for b in warm], 8, [])
    ours_fans = fans[: args.joins]
    joins = run_clients(
        url, [["POST", path, b] for b in ours_fans], args.clients, ["token", "position"]
    )
    arrival = [answer[0] for answer in joins["answered"]]  # fan indexes, as answered
    statuses = {answer[1] for answer in joins["answered"]}
    tokens = {answer[0]: answer[2] for answer in joins["answered"]}
    sample = random.Random(7).sample(range(len(ours_fans)), min(100, len(ours_fans)))
    again = run_clients(url, [["POST", path, ours_fans[i]] for i in sample], 8, ["token"])
    rejoins_same = all(a[1] == 200 and a[2] == tokens[sample[a[0]]] for a in again["answered"])

    with baseline_app(container, database_url) as baseline_url:
        warm_path = f"{NAIVE_PREFIX}/shows/{uuid4()}/queue"
        run_clients(baseline_url, [["POST", warm_path, b] for b in warm], 8, [])
        theirs_fans = fans[: args.baseline_joins]
        naive_path = f"{NAIVE_PREFIX}/shows/{show_id}/queue"
        naive = run_clients(
            baseline_url, [["POST", naive_path, b] for b in theirs_fans], args.clients, ["position"]
        )
    naive_arrival = [a[0] for a in naive["answered"]]
    naive_order = [a[0] for a in sorted(naive["answered"], key=lambda a: a[2])]
    naive_rho = rank_correlation([str(i) for i in naive_arrival], [str(i) for i in naive_order])

    clock.at = opens
    reads = run_clients(
        url,
        [["GET", f"{path}/{tokens[i]}", ours_fans[i]] for i in range(len(ours_fans))],
        args.clients,
        ["position"],
    )
    position = {a[0]: a[2] for a in reads["answered"]}
    positions_ok = sorted(position.values()) == list(range(1, len(ours_fans) + 1))
    order = sorted(position, key=lambda i: position[i])
    rho = rank_correlation([str(i) for i in arrival], [str(i) for i in order])

    by_slot = [(tokens[i], ours_fans[i]) for i in order]
    minutes = max(1, min(args.minutes, len(ours_fans) // args.rate))
    per_minute: list[int] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        before = admitted_now(http, path, by_slot)
        for minute in range(1, minutes + 1):
            clock.at = opens + timedelta(minutes=minute)
            now = admitted_now(http, path, by_slot)
            per_minute.append(now - before)
            before = now
    clock.at = None
    rate_ok = all(abs(n - args.rate) <= RATE_TOLERANCE * args.rate for n in per_minute)
    measured_rate = sum(per_minute) / len(per_minute)
    bound = fairness_bound(len(ours_fans))
    checks = {
        "all_joined": statuses == {201} and len(set(tokens.values())) == len(ours_fans),
        "rejoins_same_token": rejoins_same,
        "positions_are_a_permutation": positions_ok,
        "fair": abs(rho) < bound,
        "rate_within_5_percent": rate_ok,
        "baseline_all_joined": {a[1] for a in naive["answered"]} == {201},
    }
    return {
        "joins": len(ours_fans),
        "baseline_joins": len(naive["answered"]),
        "clients": args.clients,
        "rate_setting": args.rate,
        "ours_joins": _slim(joins),
        "baseline": _slim(naive),
        "status_reads": _slim(reads),
        "admitted_per_minute": per_minute,
        "measured_rate_per_minute": measured_rate,
        "fairness_rho": rho,
        "fairness_bound": bound,
        "baseline_rho": naive_rho,
        "checks": checks,
    }


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "answered"}


def _join_row(design: str, joins: int, run: dict[str, Any], rho: float) -> list[str]:
    """One design's line of the joins table."""
    return [
        design,
        fmt(joins),
        fmt(run["per_s"]),
        fmt(run["latency"]["p50_ms"], 1),
        fmt(run["latency"]["p99_ms"], 1),
        fmt(run["server_cpu_ms_per_request"], 2),
        f"{rho:+.3f}",
    ]


def report(result: dict[str, Any]) -> None:
    ours, theirs, reads = result["ours_joins"], result["baseline"], result["status_reads"]
    rows = [
        _join_row(
            "ours: Redis script (drawn order)", result["joins"], ours, result["fairness_rho"]
        ),
        _join_row(
            "baseline: INSERT + count(*) (FIFO)",
            result["baseline_joins"],
            theirs,
            result["baseline_rho"],
        ),
    ]
    print_table(
        f"queue joins over HTTP ({result['clients']} clients); ours/baseline "
        f"{ratio(ours['per_s'], theirs['per_s']):.2f}x",
        ["design", "joins", "joins/s", "p50 ms", "p99 ms", "server CPU ms/join", "rho(arrival)"],
        rows,
    )
    print_table(
        "waiting room",
        ["measure", "value"],
        [
            ["status reads/s (GET, at the opening)", fmt(reads["per_s"])],
            ["status read p99 ms", fmt(reads["latency"]["p99_ms"], 1)],
            ["rate setting / minute", fmt(result["rate_setting"])],
            ["let in per minute (measured)", ", ".join(map(str, result["admitted_per_minute"]))],
            ["fairness |rho| bound", f"{result['fairness_bound']:.3f}"],
            *[
                [f"check: {name}", "ok" if ok else "FAILED"]
                for name, ok in result["checks"].items()
            ],
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--joins", type=int, default=100_000)
    parser.add_argument("--baseline-joins", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--client", nargs=2, metavar=("CONFIG", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        config = json.loads(Path(args.client[0]).read_text())
        Path(args.client[1]).write_text(json.dumps(asyncio.run(_client_run(config))))
        return
    args.baseline_joins = min(args.baseline_joins, args.joins)
    started_load = load_average()
    result = run(args)
    result["benchmark"] = "queue"
    result["machine"] = machine_info()
    result["load_average_before"] = started_load
    result["load_average_after"] = load_average()
    report(result)
    write_results("queue", result)
    if not all(result["checks"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
