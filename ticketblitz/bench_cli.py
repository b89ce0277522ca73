"""`ticketblitz bench NAME [ARGS]`: the benchmarks of bench/, from a checkout of the repository.

Each benchmark is a module of its own (`python -m bench.NAME`, which prints a table and writes
JSON to bench/results/); this command runs it with the same interpreter, from the repository
root, and passes every further argument through. bench/ is not part of the installed package:
benchmarks belong to a checkout, next to the results they are compared with.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

REPOSITORY = Path(__file__).resolve().parents[1]
BENCHMARKS = {
    "commands": "one hot show through the command handlers, next to the seed-style baseline",
    "onsale": "the same over HTTP from a separate load generator, next to the baseline",
    "append": "event store appends next to raw INSERT and COPY",
    "rebuild": "projections rebuild --all next to a raw scan of the log",
    "verify": "audit verify next to a raw scan of the log",
    "recommendations": "GET /me/recommendations with 5,000 shows in the index",
    "soak": "a steady booking load for minutes: memory, answers, audit verify",
    "checkin": "8 gates scanning one show's 20,000 tickets, next to a plain UPDATE ... NOT used",
    "queue": "100,000 waiting-room joins, admission rate, fairness; next to INSERT + count(*)",
    "reads": "seat-map reads with ETags next to uncached SQL; SSE fan-out during a sell-out",
}


class UnknownBenchmarkError(Exception):
    pass


def benchmark_argv(name: str, args: list[str]) -> list[str]:
    """The command line that runs benchmark `name` with `args`."""
    if name not in BENCHMARKS or not (REPOSITORY / "bench" / f"{name}.py").exists():
        known = ", ".join(n for n in BENCHMARKS if (REPOSITORY / "bench" / f"{n}.py").exists())
        raise UnknownBenchmarkError(f"no benchmark {name!r} in this checkout (known: {known})")
    return [sys.executable, "-m", f"bench.{name}", *args]


def bench(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(BENCHMARKS)}")],
) -> None:
    """Run a benchmark of bench/ (further arguments go to it; NAME --help lists them)."""
    try:
        argv = benchmark_argv(name, list(ctx.args))
    except UnknownBenchmarkError as error:
        typer.echo(f"ticketblitz: error: {error}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(subprocess.call(argv, cwd=REPOSITORY))


BENCH_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
