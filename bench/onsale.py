"""Benchmark `onsale`: a hot show sold out over HTTP, next to the seed-style design behind the
same framework and the same load generator, in the same run.

    .venv/bin/python -m bench.onsale [--seats 10000] [--clients 200] [--rounds 2]
        [--baseline-pool 16] [--baseline-mode wait|skip-locked] [--client httpx|raw]
        [--ceiling] [--py-spy] [--what-if NAME]
        [--workers N] [--shows S] [--pay-share F]   (bench/onsale_scale.py)

The real app (`ticketblitz.web.create_app` over `bootstrap(settings)`, embedded PostgreSQL 16
and Valkey, rate limits off) is served by uvicorn in this process; the seed-style app
(bench/baselines/seed_style.py) likewise on another port. The load generator is a separate
process (bench/loadgen.py): `clients` asyncio + httpx clients, each with its own customer token,
asking for 1-4 seats (half chosen, half best-available) until the show is sold out.
Each round sells a fresh show with each design (ours first), after a small warm-up round.
Ends by checking zero oversell against the event store (and the seat-map read model if present)
and against the baseline's tables. Targets: >= 2,000 holds/s, p99 <= 200 ms, >= 2.5x baseline.
`--ceiling` adds the same endpoint with seats in a dict (bench/baselines/in_memory.py): what the
framework and the load generator can do at all on this machine. `--client raw` swaps httpx for a
minimal asyncio HTTP/1.1 client (httpx costs more CPU per request than a minimal server).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from bench import whatif
from bench.baselines.in_memory import add_show, create_in_memory_app
from bench.baselines.seed_style import SeedStyleBookings, create_baseline_app
from bench.common import (
    Layout,
    SaveProbe,
    bench_container,
    bench_stack,
    check_share,
    fmt,
    load_average,
    machine_info,
    print_table,
    ratio,
    register_customers,
    schedule_hot_show,
    verify_inventory,
)
from bench.loadgen_run import run_loadgen
from bench.onsale_scale import add_scale_arguments
from bench.onsale_scale import run as scale_run
from bench.onsale_scale import wanted as scale_wanted
from bench.profiling import PySpy, top_costs
from bench.report import (
    HotShowRun,
    SpyFiles,
    add_hot_show_arguments,
    check_read_model,
    percentiles,
    print_profile,
    print_targets,
    target,
    writer_stats,
)
from ticketblitz.http_server import BackgroundServer
from ticketblitz.web import create_app

TARGET_HOLDS = 2_000.0
TARGET_P99_MS = 200.0
TARGET_RATIO = 2.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_hot_show_arguments(parser, rounds=2)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--baseline-pool", type=int, default=16, help="baseline connections")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per sell-out, at most")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="httpx",
        help="load generator's HTTP client (raw: minimal asyncio HTTP/1.1, far less CPU)",
    )
    parser.add_argument(
        "--ceiling", action="store_true", help="also the in-memory app (the HTTP ceiling)"
    )
    add_scale_arguments(parser)
    args = parser.parse_args()
    if scale_wanted(args):  # our API in processes of its own, several shows, paying fans
        scale_run(args)
        return
    whatif.check(args.what_if)
    if (why := check_share(max(args.seats, args.warmup_seats), args.clients)) is not None:
        parser.error(why)

    layout = Layout.for_seats(args.seats, args.seats_per_row)
    warm = Layout.for_seats(args.warmup_seats, args.seats_per_row)
    spies = SpyFiles("onsale", args.py_spy)
    load_before = load_average()
    ours_rounds: list[dict[str, Any]] = []
    base_rounds: list[dict[str, Any]] = []
    memory_rounds: list[dict[str, Any]] = []
    applied: list[str] = []
    with bench_stack(redis=True) as stack:
        container = bench_container(stack)
        probe = SaveProbe().install(container.store)
        app = create_app(container)
        applied = whatif.apply_to_container(container, args.what_if)
        applied += whatif.apply_to_app(app, args.what_if)
        server = BackgroundServer(app).start()
        memory_app = create_in_memory_app(container.tokens)
        memory = BackgroundServer(memory_app).start() if args.ceiling else None
        bookings = SeedStyleBookings(
            stack.database_url, pool_size=args.baseline_pool, mode=args.baseline_mode
        )
        bookings.setup()
        baseline = BackgroundServer(create_baseline_app(bookings, container.tokens)).start()
        try:
            machine = machine_info(stack.database_url)
            pm = stack.postmaster_pid()
            tokens = register_customers(container, args.clients)

            def load(url: str, show_id: UUID, lay: Layout, seed: int) -> dict[str, Any]:
                return run_loadgen(
                    url,
                    tokens,
                    show_id,
                    lay,
                    seed,
                    args.chosen_ratio,
                    args.max_seconds,
                    pm,
                    args.client,
                )

            def ours(lay: Layout, seed: int, spy_to: Path | None = None) -> dict[str, Any]:
                show_id = schedule_hot_show(container, lay)
                probe.reset()
                before = container.writers.stats()
                spy = PySpy(os.getpid(), spy_to, gil=args.py_spy_gil).start() if spy_to else None
                if spy is not None:
                    time.sleep(0.5)
                result = load(server.url, show_id, lay, seed)
                if spy is not None:
                    spy.stop()
                result["server"] = writer_stats(before, container.writers.stats())
                result["transactions"] = probe.summary()
                result["show_id"] = str(show_id)
                result["oversell_check"] = verify_inventory(
                    container, show_id, lay.seats, result.pop("_holds")
                )
                return result

            def theirs(lay: Layout, seed: int) -> dict[str, Any]:
                show_id = bookings.create_show(lay)
                retries = bookings.retries
                result = load(baseline.url, show_id, lay, seed)
                result["retries"] = bookings.retries - retries
                result["show_id"] = str(show_id)
                result["oversell_check"] = bookings.verify(show_id, result.pop("_holds"))
                return result

            def ceiling(lay: Layout, seed: int) -> dict[str, Any]:
                assert memory is not None
                show_id = uuid4()
                seats = add_show(memory_app, str(show_id), lay)
                result = load(memory.url, show_id, lay, seed)
                holds = result.pop("_holds")
                result["oversell_check"] = {
                    "ok": sorted(len(s) for _, s in holds)
                    == sorted(len(s) for s in seats.bookings.values())
                    and len(seats.holder) == lay.seats
                }
                return result

            if args.warmup_seats:
                ours(warm, args.seed)
                if not args.no_baseline:
                    theirs(warm, args.seed)
                if memory is not None:
                    ceiling(warm, args.seed)
            for r in range(args.rounds):
                ours_rounds.append(ours(layout, args.seed + r, spies.for_round(r + 1)))
                if not args.no_baseline:
                    base_rounds.append(theirs(layout, args.seed + r))
                if memory is not None:
                    memory_rounds.append(ceiling(layout, args.seed + r))
            read_model = check_read_model(container, args, ours_rounds)
        finally:
            if memory is not None:
                memory.stop()
            baseline.stop()
            server.stop()
            bookings.close()
            container.close()
    profile = top_costs(spies.paths, n=40) if spies.paths else None
    machine["uvicorn"] = uvicorn_flavour()
    machine["what_if"] = applied
    run = HotShowRun(args, machine, load_before, ours_rounds, base_rounds, read_model, profile)
    report(run, memory_rounds)


def uvicorn_flavour() -> dict[str, str]:
    """What uvicorn's "auto" picks here: h11 or httptools, asyncio or uvloop."""
    return {
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
    }


def _total(rounds: list[dict[str, Any]]) -> float:
    if not rounds:
        return float("nan")
    return sum(r["holds"] for r in rounds) / sum(r["seconds_to_sold_out"] for r in rounds)


def report(run: HotShowRun, memory_rounds: list[dict[str, Any]]) -> None:
    args, ours_rounds, base_rounds = run.args, run.ours, run.baseline
    rows = []
    for i, o in enumerate(ours_rounds):
        b = base_rounds[i] if i < len(base_rounds) else None
        ok = o["oversell_check"]["ok"] and (b is None or b["oversell_check"]["ok"])
        rows.append(
            [
                f"round {i + 1}",
                fmt(o["holds_per_s"]),
                fmt(b["holds_per_s"]) if b else "-",
                fmt(ratio(o["holds_per_s"], b["holds_per_s"]), 1) + "x" if b else "-",
                percentiles(o["latency_all"]),
                percentiles(b["latency_all"]) if b else "-",
                f"{o['conflicts_409']}/{b['conflicts_409']}" if b else str(o["conflicts_409"]),
                fmt(o["server"]["commands_per_batch"], 1),
                o["server"]["conflicts"],
                f"{fmt(o['server_cpu_ms_per_request'], 2)}/"
                + (fmt(b["server_cpu_ms_per_request"], 2) if b else "-"),
                "ok" if ok else "FAIL",
            ]
        )
    ours, base = _total(ours_rounds), _total(base_rounds)
    rows.append(["all rounds", fmt(ours), fmt(base), fmt(ratio(ours, base), 1) + "x"] + [""] * 7)
    print_table(
        f"onsale: {args.seats:,}-seat show over HTTP, {args.clients} clients "
        f"(separate load-generator process); baseline seed-style {args.baseline_mode}",
        [
            "",
            "ours holds/s",
            "seed holds/s",
            "ratio",
            "ours p50/p95/p99 ms",
            "seed p50/p95/p99 ms",
            "409s ours/seed",
            "cmds/batch",
            "conflicts",
            "server ms CPU/req ours/seed",
            "oversell",
        ],
        rows,
    )
    if memory_rounds:
        print_table(
            "HTTP ceiling: the same endpoint with seats in a dict (no storage), same load",
            ["", "holds/s", "p50/p95/p99 ms", "loadgen cores"],
            [
                [
                    f"round {i + 1}",
                    fmt(m["holds_per_s"]),
                    percentiles(m["latency_all"]),
                    fmt(m["loadgen_cores"], 2),
                ]
                for i, m in enumerate(memory_rounds)
            ],
        )
    worst_p99 = max((o["latency_all"]["p99_ms"] for o in ours_rounds), default=float("nan"))
    no_oversell = all(o["oversell_check"]["ok"] for o in ours_rounds)
    print_targets(
        [
            target(f">= {TARGET_HOLDS:,.0f} holds/s", fmt(ours), ours >= TARGET_HOLDS),
            target(
                f"p99 <= {TARGET_P99_MS:.0f} ms",
                fmt(worst_p99, 1) + " (worst round)",
                worst_p99 <= TARGET_P99_MS,
            ),
            target(
                f">= {TARGET_RATIO}x seed-style",
                fmt(ratio(ours, base), 1) + "x",
                ratio(ours, base) >= TARGET_RATIO,
            ),
            target("zero oversell", "store ok" if no_oversell else "FAIL", no_oversell),
        ]
    )
    print_profile(run.profile, "our server during the rounds")
    run.save(
        "onsale",
        {
            "ours_holds_per_s": ours,
            "baseline_holds_per_s": base,
            "ratio": ratio(ours, base),
            "ours_worst_p99_ms": worst_p99,
            "targets": {
                "holds_per_s": TARGET_HOLDS,
                "p99_ms": TARGET_P99_MS,
                "ratio": TARGET_RATIO,
            },
            "in_memory_ceiling": memory_rounds,
        },
    )


if __name__ == "__main__":
    main()
