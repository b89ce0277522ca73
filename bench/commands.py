"""Benchmark `commands`: one hot show sold out through the command handlers, no HTTP, next to the
seed-style design (bench/baselines/seed_style.py) without HTTP, in the same run.

    .venv/bin/python -m bench.commands [--seats 10000] [--clients 200] [--rounds 3]
        [--baseline-threads 32] [--baseline-mode wait|skip-locked] [--py-spy]

Ours: `clients` asyncio tasks in this process, each a fan (bench/mix.py: 1-4 seats, half chosen
on the seat map, half best-available) calling `container.bookings.place_hold` and awaiting its
future until the show is sold out; the show writer decides and commits them in batches.
Baseline: `baseline-threads` threads, each with its own pooled connection, same mix.
Each round sells a fresh show with each design (ours first); a small warm-up round goes first.
Target: >= 10,000 holds/s and >= 8x the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from bench import whatif
from bench.baselines.seed_style import SeedStyleBookings
from bench.common import (
    TICKETS_PER_CUSTOMER,
    CpuMeter,
    Layout,
    SaveProbe,
    bench_container,
    bench_stack,
    check_share,
    fmt,
    latency_summary,
    load_average,
    machine_info,
    print_table,
    ratio,
    schedule_hot_show,
    verify_inventory,
)
from bench.mix import HELD, NOT_ENOUGH, SEATS_UNAVAILABLE, TICKET_LIMIT, Fan, SeatView
from bench.profiling import PySpy, top_costs
from bench.report import (
    HotShowRun,
    SpyFiles,
    add_hot_show_arguments,
    check_read_model,
    print_profile,
    print_targets,
    target,
    writer_stats,
)
from commands.models import BookingRequest, PlaceHold
from domain.errors import CapacityExceededError, CustomerTicketLimitError, SeatsUnavailableError
from http_shell.container import Container

TARGET_HOLDS = 10_000.0
TARGET_RATIO = 8.0


def _fans(layout: Layout, clients: int, seed: int, chosen_ratio: float) -> list[Fan]:
    view = SeatView(layout.to_json())
    rng = random.Random(seed)
    return [
        Fan(view, random.Random(rng.random()), chosen_ratio, max_tickets=TICKETS_PER_CUSTOMER)
        for _ in range(clients)
    ]


def _summary(
    holds: list[tuple[str, list[str]]],
    latencies: list[float],
    kinds: Counter[str],
    seconds: float,
    cpu: dict[str, float],
) -> dict[str, Any]:
    cpu_s = cpu.get("this_process_cpu_s", 0.0) + cpu.get("postgres_cpu_s", 0.0)
    return {
        "cpu_us_per_hold": 1e6 * cpu_s / len(holds) if holds else 0.0,
        "holds": len(holds),
        "tickets": sum(len(s) for _, s in holds),
        "requests": sum(kinds.values()),
        "seconds": seconds,
        "holds_per_s": len(holds) / seconds if seconds else 0.0,
        "latency": latency_summary(latencies),
        "answers": dict(kinds),
        "cpu": cpu,
    }


async def _drive_ours(
    container: Container, show_id: UUID, fans: list[Fan]
) -> tuple[list[tuple[str, list[str]]], list[float], Counter[str], float]:
    holds: list[tuple[str, list[str]]] = []
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    stop = asyncio.Event()
    customers = [uuid4() for _ in fans]

    async def client(fan: Fan, customer: UUID) -> None:
        while not fan.done and not stop.is_set():
            ask = fan.next_ask()
            request = BookingRequest(
                show_id=show_id,
                seats=ask.seats,
                quantity=None if ask.seats is not None else ask.quantity,
            )
            command = PlaceHold(request=request, customer_id=customer, booking_id=uuid4())
            started = time.perf_counter()
            try:
                placed = await container.bookings.place_hold_async(command)
            except SeatsUnavailableError as error:
                kinds[SEATS_UNAVAILABLE] += 1
                fan.learn(ask, SEATS_UNAVAILABLE, error.seats)
            except CapacityExceededError as error:
                kinds[NOT_ENOUGH] += 1
                fan.learn(ask, NOT_ENOUGH, available=error.available)
                if fan.sold_out:
                    stop.set()
            except CustomerTicketLimitError as error:  # this fan's share is used: it stops
                kinds[TICKET_LIMIT] += 1
                fan.learn(ask, TICKET_LIMIT, remaining=error.remaining)
            except Exception as error:
                kinds[type(error).__name__] += 1
            else:
                kinds[HELD] += 1
                holds.append((str(placed.booking_id), placed.seats))
                fan.learn(ask, HELD, placed.seats)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(f, c) for f, c in zip(fans, customers, strict=True)))
    return holds, latencies, kinds, time.perf_counter() - started


def run_ours(
    container: Container,
    layout: Layout,
    clients: int,
    seed: int,
    chosen: float,
    postmaster: int | None = None,
    profile_to: Path | None = None,
    probe: SaveProbe | None = None,
    gil: bool = False,
) -> dict[str, Any]:
    show_id = schedule_hot_show(container, layout)
    fans = _fans(layout, clients, seed, chosen)
    if probe is not None:
        probe.reset()
    spy = PySpy(os.getpid(), profile_to, gil=gil).start() if profile_to is not None else None
    if spy is not None:
        time.sleep(0.5)  # let it attach
    before = container.writers.stats()
    cpu = CpuMeter(postmaster).start()
    holds, latencies, kinds, seconds = asyncio.run(_drive_ours(container, show_id, fans))
    cpu_used = cpu.stop()
    after = container.writers.stats()
    if spy is not None:
        spy.stop()
    result = _summary(holds, latencies, kinds, seconds, cpu_used)
    result["server"] = writer_stats(before, after)
    if probe is not None:
        result["transactions"] = probe.summary()
    result["show_id"] = str(show_id)
    result["oversell_check"] = verify_inventory(container, show_id, layout.seats, holds)
    return result


def run_baseline(
    bookings: SeedStyleBookings,
    layout: Layout,
    threads: int,
    seed: int,
    chosen: float,
    postmaster: int | None = None,
) -> dict[str, Any]:
    show_id = bookings.create_show(layout)
    fans = _fans(layout, threads, seed, chosen)
    holds: list[tuple[str, list[str]]] = []
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    retries_before = bookings.retries

    def client(fan: Fan) -> None:
        customer = uuid4()
        while not fan.done and not stop.is_set():
            ask = fan.next_ask()
            started = time.perf_counter()
            kind = HELD
            seats: list[str] = []
            try:
                held = bookings.book(
                    show_id, customer, ask.seats, None if ask.seats is not None else ask.quantity
                )
                seats = held["seats"]
            except SeatsUnavailableError as error:
                kind, seats = SEATS_UNAVAILABLE, error.seats
            except CapacityExceededError as error:
                kind = NOT_ENOUGH
                fan.learn(ask, NOT_ENOUGH, available=error.available)
                if fan.sold_out:
                    stop.set()
            except CustomerTicketLimitError as error:  # never raised by the seed style: no cap
                kind = TICKET_LIMIT
                fan.learn(ask, TICKET_LIMIT, remaining=error.remaining)
            except Exception as error:
                kind = type(error).__name__
            elapsed = time.perf_counter() - started
            if kind in (HELD, SEATS_UNAVAILABLE):
                fan.learn(ask, kind, seats)
            with lock:
                kinds[kind] += 1
                latencies.append(elapsed)
                if kind == HELD:
                    holds.append((held["booking_id"], seats))

    workers = [threading.Thread(target=client, args=(f,), daemon=True) for f in fans]
    cpu = CpuMeter(postmaster).start()
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    result = _summary(holds, latencies, kinds, seconds, cpu.stop())
    result["retries"] = bookings.retries - retries_before
    result["show_id"] = str(show_id)
    result["oversell_check"] = bookings.verify(show_id, holds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_hot_show_arguments(parser, rounds=3)
    parser.add_argument("--clients", type=int, default=200, help="our concurrent callers")
    parser.add_argument("--baseline-threads", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=None, help="writer's max batch")
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="diagnostic: sys.setswitchinterval"
    )
    args = parser.parse_args()
    whatif.check(args.what_if)
    for clients in (args.clients, args.baseline_threads):
        if (why := check_share(max(args.seats, args.warmup_seats), clients)) is not None:
            parser.error(why)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    layout = Layout.for_seats(args.seats, args.seats_per_row)
    warm = Layout.for_seats(args.warmup_seats, args.seats_per_row)
    spies = SpyFiles("commands", args.py_spy)
    load_before = load_average()
    overrides: dict[str, Any] = {}
    if args.max_batch is not None:
        overrides["max_batch"] = args.max_batch
    with bench_stack(redis=False) as stack:
        container = bench_container(stack, **overrides)
        applied = whatif.apply_to_container(container, args.what_if)
        probe = SaveProbe().install(container.store)
        bookings = SeedStyleBookings(
            stack.database_url, pool_size=args.baseline_threads, mode=args.baseline_mode
        )
        bookings.setup()
        try:
            machine = machine_info(stack.database_url)
            pm = stack.postmaster_pid()
            if args.warmup_seats:
                run_ours(container, warm, args.clients, args.seed, args.chosen_ratio)
                run_baseline(bookings, warm, args.baseline_threads, args.seed, args.chosen_ratio)
            ours_rounds: list[dict[str, Any]] = []
            base_rounds: list[dict[str, Any]] = []
            for r in range(args.rounds):
                ours = run_ours(
                    container,
                    layout,
                    args.clients,
                    args.seed + r,
                    args.chosen_ratio,
                    postmaster=pm,
                    profile_to=spies.for_round(r + 1),
                    probe=probe,
                    gil=args.py_spy_gil,
                )
                ours_rounds.append(ours)
                base_rounds.append(
                    run_baseline(
                        bookings,
                        layout,
                        args.baseline_threads,
                        args.seed + r,
                        args.chosen_ratio,
                        postmaster=pm,
                    )
                )
            read_model = check_read_model(container, args, ours_rounds)
        finally:
            bookings.close()
            container.close()
    profile = top_costs(spies.paths, n=40) if spies.paths else None
    machine["what_if"] = applied
    report(HotShowRun(args, machine, load_before, ours_rounds, base_rounds, read_model, profile))


def _total(rounds: list[dict[str, Any]]) -> float:
    return sum(r["holds"] for r in rounds) / sum(r["seconds"] for r in rounds)


def report(run: HotShowRun) -> None:
    args, ours_rounds, base_rounds = run.args, run.ours, run.baseline
    rows = []
    for i, (o, b) in enumerate(zip(ours_rounds, base_rounds, strict=True), start=1):
        rows.append(
            [
                f"round {i}",
                fmt(o["holds_per_s"]),
                fmt(b["holds_per_s"]),
                fmt(ratio(o["holds_per_s"], b["holds_per_s"]), 1) + "x",
                fmt(o["latency"]["p99_ms"], 1),
                fmt(b["latency"]["p99_ms"], 1),
                fmt(o["server"]["commands_per_batch"], 1),
                o["server"]["conflicts"],
                f"{fmt(o['cpu_us_per_hold'])}/{fmt(b['cpu_us_per_hold'])}",
                "ok" if o["oversell_check"]["ok"] and b["oversell_check"]["ok"] else "FAIL",
            ]
        )
    ours, base = _total(ours_rounds), _total(base_rounds)
    rows.append(
        [
            "all rounds",
            fmt(ours),
            fmt(base),
            fmt(ratio(ours, base), 1) + "x",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
    )
    print_table(
        f"commands: {args.seats:,}-seat hot show, no HTTP ({args.clients} tasks vs "
        f"{args.baseline_threads} threads, baseline {args.baseline_mode})",
        [
            "",
            "ours holds/s",
            "seed-style holds/s",
            "ratio",
            "ours p99 ms",
            "seed p99 ms",
            "cmds/batch",
            "conflicts",
            "CPU us/hold ours/seed",
            "oversell",
        ],
        rows,
    )
    print_targets(
        [
            target(f">= {TARGET_HOLDS:,.0f} holds/s", fmt(ours), ours >= TARGET_HOLDS),
            target(
                f">= {TARGET_RATIO:.0f}x seed-style",
                fmt(ratio(ours, base), 1) + "x",
                ratio(ours, base) >= TARGET_RATIO,
            ),
        ]
    )
    print_profile(run.profile, "our rounds")
    run.save(
        "commands",
        {
            "ours_holds_per_s": ours,
            "baseline_holds_per_s": base,
            "ratio": ratio(ours, base),
            "targets": {"holds_per_s": TARGET_HOLDS, "ratio": TARGET_RATIO},
        },
    )


if __name__ == "__main__":
    main()
