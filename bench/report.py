"""The benchmarks' report: the tables every benchmark prints alike and its results file.

bench/common.py formats one cell (`fmt`) and prints one table (`print_table`); this module holds
what the benchmarks' `report()` functions repeated around them: the targets table, the py-spy
table, latency percentiles in one cell, the rounds of a hot show, and the results file with the
run's conditions (arguments, machine, load average before and after).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from bench import whatif
from bench.baselines.seed_style import MODES
from bench.common import (
    RESULTS_DIR,
    fmt,
    load_average,
    print_table,
    verify_read_model,
    write_results,
)
from http_shell.container import Container


def percentiles(latency: Mapping[str, float], digits: int = 1) -> str:
    """p50/p95/p99 of a `latency_summary` in one cell."""
    return "/".join(fmt(latency[f"p{p}_ms"], digits) for p in (50, 95, 99))


def target(what: str, measured: str, met: bool) -> list[str]:
    """One row of the targets table."""
    return [what, measured, "yes" if met else "NO"]


def print_targets(rows: Sequence[Sequence[str]]) -> None:
    print_table("targets", ["target", "measured", "met"], rows)


def print_profile(profile: Mapping[str, Any] | None, whose: str) -> None:
    """The top 15 functions by self time of a py-spy profile (bench/profiling.py), if any."""
    if profile:
        print_table(
            f"py-spy, {whose}: self time (top 15)",
            ["function", "% samples"],
            [[k, fmt(v, 1)] for k, v in profile["self_pct"][:15]],
        )


def save(
    benchmark: str,
    args: argparse.Namespace,
    machine: dict[str, Any],
    load_before: list[float],
    figures: dict[str, Any],
    name: str | None = None,
) -> Path:
    """Write bench/results/<name>-<timestamp>.json: the figures and the run's conditions."""
    data = {
        "benchmark": benchmark,
        "args": vars(args),
        "machine": machine,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        **figures,
    }
    return write_results(name or benchmark, data)


# --- the hot-show rounds of `commands`, `onsale` (ours next to the seed-style baseline) --------


def add_hot_show_arguments(parser: argparse.ArgumentParser, rounds: int) -> None:
    """The arguments every hot-show benchmark takes alike."""
    parser.add_argument("--seats", type=int, default=10_000)
    parser.add_argument("--seats-per-row", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--warmup-seats", type=int, default=2000)
    parser.add_argument("--chosen-ratio", type=float, default=0.5)
    parser.add_argument("--baseline-mode", choices=MODES, default="wait")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--py-spy", action="store_true", help="profile our rounds")
    parser.add_argument("--py-spy-gil", action="store_true", help="sample only the GIL holder")
    parser.add_argument("--no-read-model", action="store_true")
    parser.add_argument(
        "--what-if", action="append", default=[], help=f"experiment: {', '.join(whatif.KNOWN)}"
    )


class SpyFiles:
    """Where py-spy writes each round's profile, when asked (`--py-spy`)."""

    def __init__(self, benchmark: str, wanted: bool) -> None:
        self._prefix = f"{benchmark}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        self._wanted = wanted
        self.paths: list[Path] = []

    def for_round(self, number: int) -> Path | None:
        if not self._wanted:
            return None
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self._prefix}-round{number}.pyspy.txt"
        self.paths.append(path)
        return path


def writer_stats(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """The show writers' counters over a round, and the commands they decided per batch."""
    server = {k: after[k] - before[k] for k in after}
    server["commands_per_batch"] = (
        server["commands"] / server["batches"] if server["batches"] else 0.0
    )
    return server


def check_read_model(
    container: Container, args: argparse.Namespace, ours_rounds: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The seat-map read model of our rounds' shows against their sizes (`--no-read-model`
    skips it)."""
    if args.no_read_model:
        return {"checked": False, "reason": "--no-read-model"}
    return verify_read_model(container, [(UUID(o["show_id"]), args.seats) for o in ours_rounds])


@dataclass
class HotShowRun:
    """A hot-show benchmark's run: its conditions, our rounds next to the baseline's, checks."""

    args: argparse.Namespace
    machine: dict[str, Any]
    load_before: list[float]
    ours: list[dict[str, Any]]
    baseline: list[dict[str, Any]]
    read_model: dict[str, Any]
    profile: dict[str, Any] | None

    def save(self, benchmark: str, figures: dict[str, Any]) -> Path:
        rounds = {
            "ours": self.ours,
            "baseline": self.baseline,
            "read_model_check": self.read_model,
            "profile": self.profile,
        }
        return save(benchmark, self.args, self.machine, self.load_before, {**figures, **rounds})
