"""Shared parts of the benchmarks: the stack, the hot show, customers, timing, tables, results.

Every benchmark starts its own embedded PostgreSQL (and Valkey when asked) in a short temporary
directory under /tmp, so runs never share state with tests or with each other, and writes its
figures to ``bench/results/<name>-<timestamp>.json`` (git-ignored) besides printing a table.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from commands.models import OpenSale, PriceTier, RegisterAccount, Row, ScheduleShow, SeatedSection
from http_shell.container import Container
from infra.settings import Settings
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import EmbeddedStack, StackEndpoints

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BENCH_JWT_SECRET = "bench-secret-long-enough-for-hs256-0123456789abcdef"
SECTION = "A"
TIER = "STD"
PRICE_CENTS = 4500
# Benchmark shows let one customer hold up to the highest cap a show may set, so that the cap
# per customer (10 by default) does not end a fan's run long before the show sells out; fans
# keep to it themselves (bench/mix.py), with every design alike.
TICKETS_PER_CUSTOMER = 1000

console = Console(width=None if sys.stdout.isatty() else 200)


# --- the stack ------------------------------------------------------------------------------


@dataclass
class BenchStack:
    data_dir: Path
    endpoints: StackEndpoints

    @property
    def database_url(self) -> str:
        assert self.endpoints.database_url is not None
        return self.endpoints.database_url

    def postmaster_pid(self) -> int | None:
        """From the cluster's postmaster.pid (first line), else from a backend's parent."""
        try:
            return int((self.data_dir / "s" / "pg" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return postmaster_pid(self.database_url)


@contextmanager
def bench_stack(redis: bool = False, stripe: bool = False) -> Iterator[BenchStack]:
    """A fresh embedded PostgreSQL 16 (and Valkey, the Stripe emulator if asked) in
    /tmp/tbb-XXXX, removed after."""
    data_dir = Path(tempfile.mkdtemp(prefix="tbb-", dir="/tmp"))
    stack = EmbeddedStack(
        data_dir / "s", postgres=True, redis=redis, kafka=False, stripe=stripe, smtp=False
    )
    try:
        endpoints = stack.start()
        yield BenchStack(data_dir, endpoints)
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def bench_settings(stack: BenchStack, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": stack.data_dir / "app",
        "database_url": stack.database_url,
        "redis_url": stack.endpoints.redis_url,
        "stripe_api_base": stack.endpoints.stripe_api_base,
        "jwt_secret": SecretStr(BENCH_JWT_SECRET),
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "rate_limit_enabled": False,
        "hold_minutes": 60.0,
    }
    values.update(overrides)
    return Settings(**values)


def bench_container(stack: BenchStack, **overrides: Any) -> Container:
    return bootstrap(bench_settings(stack, **overrides))


# --- the hot show ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """One seated section of `rows`; seat ids as the domain names them (``A-<row>-<n>``)."""

    rows: list[tuple[str, int]]  # (row label, seats in the row), front to back

    @classmethod
    def for_seats(cls, seats: int, per_row: int = 50) -> Layout:
        full, rest = divmod(seats, per_row)
        rows = [(str(r), per_row) for r in range(1, full + 1)]
        if rest:
            rows.append((str(full + 1), rest))
        return cls(rows)

    @property
    def seats(self) -> int:
        return sum(n for _, n in self.rows)

    def seat_ids(self) -> list[str]:
        return [f"{SECTION}-{label}-{n}" for label, count in self.rows for n in range(1, count + 1)]

    def to_json(self) -> list[list[Any]]:
        return [[label, n] for label, n in self.rows]


def show_start(days_ahead: int = 180) -> datetime:
    """When a benchmark show starts: in the future (a show must, when it is scheduled, and
    takes no hold once started), `days_ahead` days from today at 20:00 UTC."""
    today = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days_ahead)


def check_share(seats: int, clients: int) -> str | None:
    """Why `clients` fans could not sell out `seats` within their cap per customer, or None."""
    if seats > clients * TICKETS_PER_CUSTOMER:
        return (
            f"{clients} clients hold at most {clients * TICKETS_PER_CUSTOMER:,} seats "
            f"({TICKETS_PER_CUSTOMER} per customer per show): too few to sell out {seats:,}"
        )
    return None


def schedule_hot_show(container: Container, layout: Layout, title: str = "Hot show") -> UUID:
    """A show with one seated section, on sale, TICKETS_PER_CUSTOMER per customer."""
    command = ScheduleShow(
        title=title,
        description="Benchmark on-sale.",
        category="rock",
        venue="Bench Arena",
        starts_at=show_start(),
        max_tickets_per_customer=TICKETS_PER_CUSTOMER,
        currency="EUR",
        price_tiers=[PriceTier(code=TIER, price_cents=PRICE_CENTS)],
        sections=[
            SeatedSection(
                code=SECTION,
                kind="seated",
                tier=TIER,
                rows=[Row(label=label, seats=n) for label, n in layout.rows],
            )
        ],
    )
    show_id = container.shows.schedule_show(command).show_id
    container.shows.open_sale(OpenSale(show_id=show_id)).result(timeout=30)
    return show_id


def register_customers(container: Container, count: int, prefix: str = "fan") -> list[str]:
    """`count` customers through the command handler; their bearer tokens."""
    tokens: list[str] = []
    run = f"{int(time.time() * 1000) % 10**9}"
    for i in range(count):
        registered = container.accounts.register(
            RegisterAccount(
                email=f"{prefix}-{run}-{i}@bench.ticketblitz.dev",
                password="bench-password",
                name=f"Fan {i}",
            )
        )
        tokens.append(container.tokens.issue(registered.account_id, "customer"))
    return tokens


# --- timing and statistics ------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "count": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


def _proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(ppid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == ppid:
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def postmaster_pid(database_url: str) -> int | None:
    """The PostgreSQL server's main process (the parent of our backend)."""
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        with open(f"/proc/{row[0]}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, psycopg.Error, AssertionError):
        return None


class CpuMeter:
    """CPU use between start() and stop() (from /proc): the whole machine, this process, and
    the PostgreSQL server (postmaster and its children, i.e. backends, WAL writer, ...)."""

    def __init__(self, postmaster: int | None = None) -> None:
        self.postmaster = postmaster
        self.result: dict[str, float] = {}

    @staticmethod
    def _machine() -> tuple[float, float]:
        with open("/proc/stat") as f:
            parts = [float(x) for x in f.readline().split()[1:]]
        idle = parts[3] + parts[4]
        return sum(parts) - idle, sum(parts)

    def _postgres(self) -> dict[int, float]:
        if self.postmaster is None:
            return {}
        pids = [self.postmaster, *_children(self.postmaster)]
        return {pid: _proc_cpu_seconds(pid) for pid in pids}

    def start(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._busy0, self._total0 = self._machine()
        self._proc0 = os.times()
        self._pg0 = self._postgres()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        busy, total = self._machine()
        proc = os.times()
        pg1 = self._postgres()
        cpus = os.cpu_count() or 1
        machine_busy = (busy - self._busy0) / max(total - self._total0, 1.0)
        proc_cpu = (proc.user - self._proc0.user) + (proc.system - self._proc0.system)
        pg_cpu = sum(v - self._pg0.get(pid, 0.0) for pid, v in pg1.items())
        self.result = {
            "wall_s": wall,
            "machine_busy_pct": 100.0 * machine_busy,  # of all cores, whoever used them
            "machine_cores_busy": machine_busy * cpus,
            "this_process_cpu_s": proc_cpu,
            "this_process_cores": proc_cpu / wall if wall else 0.0,  # 1.0 = one core busy
            "postgres_cpu_s": pg_cpu,
            "postgres_cores": pg_cpu / wall if wall else 0.0,
        }
        return self.result


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - started


@dataclass
class SaveProbe:
    """Wraps `store.save` on one store instance (not the class) to time appends and count
    events per transaction: the server-side batch sizes and the time spent in the database."""

    sizes: list[int] = field(default_factory=list)  # events per save
    seconds: list[float] = field(default_factory=list)
    snapshot_seconds: list[float] = field(default_factory=list)
    attempt_seconds: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, store: Any) -> SaveProbe:
        original = store.save

        def save(*aggregates: Any) -> int:
            events = sum(len(a.pending_events) for a in aggregates)
            started = time.perf_counter()
            try:
                return int(original(*aggregates))
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.sizes.append(events)
                    self.seconds.append(elapsed)

        original_snapshot = store.snapshot

        def snapshot(aggregate: Any) -> None:
            started = time.perf_counter()
            try:
                original_snapshot(aggregate)
            finally:
                with self._lock:
                    self.snapshot_seconds.append(time.perf_counter() - started)

        store.save = save
        store.snapshot = snapshot
        self._wrap_attempts()
        return self

    def _wrap_attempts(self) -> None:
        """Time each batch attempt of the show writers (decide + save + snapshot), so that the
        deciding time is known too. A private method: skipped if it is not there any more."""
        from commands.show_writer import ShowWriter

        original = getattr(ShowWriter, "_attempt", None)
        if original is None or getattr(original, "_bench_probe", False):
            return
        probe = self

        def attempt(writer: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(writer, batch, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                with probe._lock:
                    probe.attempt_seconds.append(elapsed)

        attempt._bench_probe = True  # type: ignore[attr-defined]
        setattr(ShowWriter, "_attempt", attempt)  # noqa: B010

    def reset(self) -> None:
        with self._lock:
            self.sizes.clear()
            self.seconds.clear()
            self.snapshot_seconds.clear()
            self.attempt_seconds.clear()

    def summary(self) -> dict[str, float]:
        with self._lock:
            sizes, seconds = list(self.sizes), list(self.seconds)
            snapshots = list(self.snapshot_seconds)
            attempts = list(self.attempt_seconds)
        if not sizes:
            return {"transactions": 0}
        deciding = sum(attempts) - sum(seconds) - sum(snapshots)
        return {
            "attempts": len(attempts),
            "attempt_seconds_total": sum(attempts),
            "decide_seconds_total": deciding,  # attempts minus saves and snapshots
            "snapshots": len(snapshots),
            "snapshot_ms_mean": 1000.0 * sum(snapshots) / len(snapshots) if snapshots else 0.0,
            "snapshot_seconds_total": sum(snapshots),
            "transactions": len(sizes),
            "events": sum(sizes),
            "events_per_tx_mean": sum(sizes) / len(sizes),
            "events_per_tx_p50": percentile(sizes, 50),
            "events_per_tx_max": max(sizes),
            "save_ms_mean": 1000.0 * sum(seconds) / len(seconds),
            "save_ms_p99": 1000.0 * percentile(seconds, 99),
            "save_seconds_total": sum(seconds),
        }


# --- machine and conditions -----------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(database_url: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": load_average(),
    }
    try:
        with open("/proc/meminfo") as f:
            total_kib = int(f.readline().split()[1])
        info["memory_gib"] = round(total_kib / 1024 / 1024, 1)
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
    except OSError:
        pass
    if database_url is not None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            info["postgres"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections"):
                info[f"pg_{name}"] = conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
    return info


# --- output ---------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 0) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    console.print(f"results: {path}")
    return path


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else math.inf


# --- zero oversell --------------------------------------------------------------------------


def verify_inventory(
    container: Container, show_id: UUID, seats_total: int, holds: Sequence[Sequence[Any]]
) -> dict[str, Any]:
    """Load the SeatInventory from the store (not the writer's cache) and check: every seat is
    held by exactly one booking, the claims are exactly the successful answers with the seats
    they announced, and no seat appears in two answers."""
    from domain.ids import inventory_id_for
    from domain.inventory import SeatInventory

    inventory = container.store.get(inventory_id_for(show_id), SeatInventory)
    claimed: dict[str, str] = {}
    double = 0
    for booking, claim in inventory.claims.items():
        for seat in claim.seats:
            if seat in claimed or inventory.holder.get(seat) != booking:
                double += 1
            claimed[seat] = booking
    answered: dict[str, list[str]] = {}
    answered_seats: set[str] = set()
    double_answers = 0
    for booking_id, seats, *_ in holds:
        answered[UUID(str(booking_id)).hex] = sorted(seats)
        for seat in seats:
            if seat in answered_seats:
                double_answers += 1
            answered_seats.add(seat)
    stored = {b: sorted(c.seats) for b, c in inventory.claims.items()}
    free_left = inventory.free_count()
    ok = (
        double == 0
        and double_answers == 0
        and len(claimed) == len(inventory.holder)
        and answered == stored
        and len(claimed) + free_left == seats_total
    )
    return {
        "inventory_version": inventory.version,
        "seats": seats_total,
        "held": len(inventory.holder),
        "free_left": free_left,
        "claims": len(inventory.claims),
        "successes_answered": len(holds),
        "double_booked_seats": double,
        "seats_in_two_answers": double_answers,
        "answers_match_store": answered == stored,
        "ok": ok,
    }


def verify_read_model(
    container: Container, shows: Sequence[tuple[UUID, int]], timeout: float = 90.0
) -> dict[str, Any]:
    """Optional: once the seat-map projection caught up, no seat of these shows is free.
    Built by others (projections/); any failure is reported, never fatal."""
    try:
        read = container.read_side
        if read is None:
            return {"checked": False, "reason": "no read side"}
        head = container.store.head_position()
        started = time.perf_counter()
        runners = read.start_runners()
        if not runners.wait_for(head, ["seat_map"], timeout=timeout):
            return {"checked": False, "reason": f"seat_map did not reach {head} in {timeout}s"}
        caught_up = time.perf_counter() - started
        results = []
        for show_id, seats_total in shows:
            found = read.models.seat_map(show_id)
            if found is None:
                results.append({"show": str(show_id), "ok": False, "reason": "unknown show"})
                continue
            _, seats = found
            free = sum(1 for s in seats if s[4] == "free")
            results.append(
                {
                    "show": str(show_id),
                    "seats": len(seats),
                    "free": free,
                    "ok": len(seats) == seats_total and free == 0,
                }
            )
        return {
            "checked": True,
            "catch_up_seconds": caught_up,
            "shows": results,
            "ok": all(r["ok"] for r in results),
        }
    except Exception as error:  # someone else's module: report, don't fail the benchmark
        return {"checked": False, "reason": f"{type(error).__name__}: {error}"}


@contextmanager
def fresh_database(server_url: str | None) -> Iterator[str]:
    """A database of its own for one benchmark: a new embedded server, or a new database on
    `server_url` dropped afterwards."""
    if server_url is None:
        with tempfile.TemporaryDirectory(prefix="tbb-", dir="/tmp") as tmp:
            stack = EmbeddedStack(Path(tmp), kafka=False, redis=False, stripe=False, smtp=False)
            endpoints = stack.start()
            try:
                assert endpoints.database_url is not None
                yield endpoints.database_url
            finally:
                stack.stop()
        return
    with new_database(server_url) as url:
        yield url


@contextmanager
def new_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """A database of its own on `server_url` (a copy of `template`'s database when given),
    dropped afterwards (the tests use it too: a log no one else writes to)."""
    name = f"tb_{uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        source = psycopg.conninfo.conninfo_to_dict(template)["dbname"]
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(str(source)))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(create)
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
