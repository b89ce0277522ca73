"""Soak test: the whole system under a steady booking and payment rate for a long while.

    .venv/bin/python -m bench.soak --minutes 10 [--rate 5] [--sample-every 5] [--seed 7]

Starts every embedded server (PostgreSQL, Kafka, Valkey, Stripe emulator, SMTP), then, each
as a process of its own, `ticketblitz serve` (both APIs), `ticketblitz projections run` and
`ticketblitz workers`, and a load generator (`python -m bench.soak loadgen`) that starts
`--rate` customer journeys per second (open loop: at a fixed pace, whatever the answers):

    55 %  book, paying at once (the saga charges the card: confirmed)
    15 %  book, then pay with `POST /bookings/{id}/pay` once the intent exists (confirmed)
    10 %  book with a card that is declined (the saga cancels the booking)
    10 %  book and never pay (the hold expires after --hold-minutes)
    10 %  book, paying at once, then cancel once confirmed (refunded)

and reads (show details, seat map, my bookings) at the same rate. Every `--sample-every`
seconds it records the resident memory (RSS, from /proc) of each server process. At the end
it waits for the followers to catch up, runs `ticketblitz audit verify`, prints a table and
writes bench/results/soak-<timestamp>.json: RSS at the start, the end and its maximum per
process with the slope over the run after the first minute, answers by status per request
kind and per minute, latencies, and the verify result. It is not part of the test suite.

What "pass" means: flat memory (no steady climb of the app processes), no error answer other
than 409 (sold out, seats taken) and 429 (rate limit), and an audit verify that passes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psycopg

from bench.common import (
    TICKETS_PER_CUSTOMER,
    console,
    fmt,
    latency_summary,
    load_average,
    machine_info,
    print_table,
    show_start,
    write_results,
)
from infra.payments import register_emulator_webhook
from ticketblitz.embedded import EmbeddedStack
from ticketblitz.http_server import free_port

CLI = str(Path(sys.executable).parent / "ticketblitz")
JWT_SECRET = "soak-secret-long-enough-for-hs256-0123456789abcdef"
WEBHOOK_SECRET = "whsec_soak_0123456789abcdef"
ADMIN = ("admin@soak.ticketblitz.dev", "soak-admin-password")
PASSWORD = "soak customer password"
VISA, DECLINED = "pm_card_visa", "pm_card_chargeCustomerFail"
JOURNEYS = {"pay-now": 55, "pay-later": 15, "declined": 10, "unpaid": 10, "cancel": 10}
EXPECTED_ERRORS = {409, 429}
APP_PROCESSES = ("api", "workers", "projections")


# --- the system under test ---------------------------------------------------------------------


@dataclass
class System:
    data_dir: Path
    stack: EmbeddedStack
    env: dict[str, str]
    api_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str]) -> None:
        with open(self.data_dir / "logs" / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [CLI, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()} | self.stack.server_pids()

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}")

    def run(self, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )


def environment(stack: EmbeddedStack, data_dir: Path, args: argparse.Namespace) -> dict[str, str]:
    e = stack.endpoints
    values: dict[str, object] = {
        "DATA_DIR": data_dir / "app",
        "DATABASE_URL": e.database_url,
        "KAFKA_BOOTSTRAP": e.kafka_bootstrap,
        "REDIS_URL": e.redis_url,
        "STRIPE_API_BASE": e.stripe_api_base,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SMTP_HOST": e.smtp_host,
        "SMTP_PORT": e.smtp_port,
        "JWT_SECRET": JWT_SECRET,
        "ADMIN_EMAIL": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "HOLD_MINUTES": args.hold_minutes,
        "SHOW_CACHE_IDLE_SECONDS": args.show_cache_idle_seconds,
        "RELAY_CACHED_AGGREGATES": args.relay_cached_aggregates,
        # Setup registers and logs in every customer from one address: not what the limits
        # are for. Bookings keep their per-customer limit.
        "RATE_LIMIT_REGISTER_PER_MINUTE": 100_000,
        "RATE_LIMIT_LOGIN_PER_MINUTE": 100_000,
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_KIB": 1024,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETBLITZ_")}
    env.update({f"TICKETBLITZ_{k}": str(v) for k, v in values.items()})
    return env


@contextmanager
def running_system(args: argparse.Namespace) -> Iterator[System]:
    data_dir = Path(tempfile.mkdtemp(prefix="tbs-", dir="/tmp"))
    stack = EmbeddedStack(data_dir / "s")
    try:
        stack.start()
        (data_dir / "logs").mkdir()
        port = free_port()
        system = System(
            data_dir, stack, environment(stack, data_dir, args), f"http://127.0.0.1:{port}"
        )
        try:
            system.start(
                "api", ["serve", "--api", "all", "--host", "127.0.0.1", "--port", str(port)]
            )
            wait_healthy(system)
            system.start("projections", ["projections", "run"])
            system.start("workers", ["workers"])
            assert stack.endpoints.stripe_api_base is not None
            webhook = f"{system.api_url}/api/v1/payments/stripe/webhook"
            register_emulator_webhook(stack.endpoints.stripe_api_base, webhook, WEBHOOK_SECRET)
            yield system
        finally:
            for process in system.processes.values():
                process.terminate()
            for process in system.processes.values():
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_healthy(system: System, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        system.check_alive()
        try:
            if httpx.get(f"{system.api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not answer /health in time")


def show_body(n: int, rows: int, general: int) -> dict[str, Any]:
    """Show number `n`: `rows` rows of 25 seats and a general-admission section."""
    return {
        "title": f"Soak night {n}",
        "description": "A long evening of steady demand.",
        "category": ["rock", "jazz", "classical", "comedy"][n % 4],
        "venue": "Soak Arena",
        "starts_at": show_start().isoformat(),
        # Customers come back to the same shows for the whole soak: the default cap (10 per
        # customer per show) would turn most bookings into 409s long before a show sells out.
        "max_tickets_per_customer": TICKETS_PER_CUSTOMER,
        "currency": "EUR",
        "price_tiers": [
            {"code": "STD", "price_cents": 4500},
            {"code": "FLOOR", "price_cents": 3000},
        ],
        "sections": [
            {
                "code": "A",
                "kind": "seated",
                "tier": "STD",
                "rows": [{"label": str(r), "seats": 25} for r in range(1, rows + 1)],
            },
            {"code": "GA", "kind": "general", "tier": "FLOOR", "capacity": general},
        ],
    }


def setup(system: System, args: argparse.Namespace) -> dict[str, Any]:
    """Shows on sale (a seated section and a general-admission one each) and customers."""
    api = f"{system.api_url}/api/v1"
    with httpx.Client(base_url=api, timeout=60) as http:
        admin_token = token(http, *ADMIN)
        admin = {"Authorization": f"Bearer {admin_token}"}
        show_ids = []
        for n in range(args.shows):
            r = http.post("/shows", json=show_body(n, args.rows, args.ga), headers=admin)
            r.raise_for_status()
            show_ids.append(r.json()["show_id"])
            http.post(f"/shows/{show_ids[-1]}/open-sale", headers=admin).raise_for_status()
        tokens = []
        for n in range(args.customers):
            email = f"soak-{uuid4().hex[:8]}-{n}@soak.ticketblitz.dev"
            body = {"email": email, "password": PASSWORD, "name": f"Fan {n}"}
            http.post("/auth/register", json=body).raise_for_status()
            tokens.append(token(http, email, PASSWORD))
    shape = {"rows": args.rows, "ga": args.ga}
    return {"shows": show_ids, "tokens": tokens, "admin": admin_token, "shape": shape}


def token(http: httpx.Client, email: str, password: str) -> str:
    r = http.post("/auth/token", json={"email": email, "password": password})
    r.raise_for_status()
    value: str = r.json()["access_token"]
    return value


# --- memory ------------------------------------------------------------------------------------


def rss_mib(pid: int, with_children: bool = False) -> float | None:
    """Resident memory of a process (and of its children, e.g. PostgreSQL's backends)."""
    pids = [pid, *(children_of(pid) if with_children else [])]
    total = 0
    for each in pids:
        try:
            with open(f"/proc/{each}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            if each == pid:
                return None
    return total / 1024


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


async def sample_memory(
    system: System, every: float, stop: asyncio.Event
) -> dict[str, list[tuple[float, float]]]:
    """(seconds since start, MiB) per process until `stop`."""
    samples: dict[str, list[tuple[float, float]]] = {}
    started = time.monotonic()
    while True:
        system.check_alive()
        at = time.monotonic() - started
        for name, pid in system.pids().items():
            value = rss_mib(pid)
            if value is not None:
                samples.setdefault(name, []).append((at, value))
        pg = system.pids().get("postgres")
        if pg is not None and (total := rss_mib(pg, with_children=True)) is not None:
            samples.setdefault("postgres+backends", []).append((at, total))
        try:
            await asyncio.wait_for(stop.wait(), every)
            return samples
        except TimeoutError:
            continue


def slope_per_minute(points: list[tuple[float, float]], skip_seconds: float = 60) -> float:
    """Least-squares slope (MiB per minute) of the samples after the first `skip_seconds`."""
    kept = [(t, v) for t, v in points if t >= skip_seconds] or points
    if len(kept) < 2:
        return 0.0
    n = len(kept)
    mean_t = sum(t for t, _ in kept) / n
    mean_v = sum(v for _, v in kept) / n
    var = sum((t - mean_t) ** 2 for t, _ in kept)
    if var == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in kept) / var


# --- the load generator (a process of its own) -------------------------------------------------


class Load:
    """Journeys started at a fixed pace; every answer counted by request kind and status."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.rng = random.Random(config["seed"])
        self.statuses: dict[str, Counter[int]] = {}
        self.per_minute: dict[int, Counter[str]] = {}
        self.latencies: dict[str, list[float]] = {}
        self.transport_errors: Counter[str] = Counter()
        self.skipped = 0
        self.journeys: Counter[str] = Counter()
        self.started = time.monotonic()
        self.shows: list[str] = list(config["shows"])
        self.replacing: set[str] = set()
        self.scheduled = len(self.shows)

    async def request(
        self, http: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        began = time.monotonic()
        try:
            r = await http.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            self.transport_errors[f"{kind}:{type(error).__name__}"] += 1
            return None
        self.latencies.setdefault(kind, []).append(time.monotonic() - began)
        self.statuses.setdefault(kind, Counter())[r.status_code] += 1
        minute = int((began - self.started) // 60)
        self.per_minute.setdefault(minute, Counter())[str(r.status_code)] += 1
        return r

    async def booking_status(
        self, http: httpx.AsyncClient, auth: dict[str, str], booked: Any, wanted: set[str]
    ) -> str | None:
        """Poll the query API (at most 20 s) until the booking's status is one of `wanted`;
        `after` the booking's position, so that it reads its own write."""
        deadline = time.monotonic() + 20
        url, after = f"/bookings/{booked['booking_id']}", {"after": booked["position"]}
        while time.monotonic() < deadline:
            r = await self.request(http, "get-booking", "GET", url, params=after, headers=auth)
            if r is not None and r.status_code == 200 and r.json()["status"] in wanted:
                status: str = r.json()["status"]
                return status
            await asyncio.sleep(0.5)
        return None

    async def journey(self, http: httpx.AsyncClient, kind: str) -> None:
        self.journeys[kind] += 1
        auth = {"Authorization": f"Bearer {self.rng.choice(self.config['tokens'])}"}
        show = self.rng.choice(self.shows)
        quantity = self.rng.randint(1, 4)
        body: dict[str, Any] = {"show_id": show, "quantity": quantity}
        if self.rng.random() < 0.3:
            body["section"] = "GA"
        method = {"pay-now": VISA, "cancel": VISA, "declined": DECLINED}.get(kind)
        if method is not None:
            body["payment_method"] = method
        headers = {**auth, "Idempotency-Key": uuid4().hex}
        r = await self.request(http, "book", "POST", "/bookings", json=body, headers=headers)
        await self.read(http, auth, show)
        if r is not None and r.status_code == 409 and "not-enough-tickets" in r.text:
            await self.replace_sold_out(http, show)
        if r is None or r.status_code != 201:
            return
        booked = r.json()
        booking_id = booked["booking_id"]
        if kind == "pay-later":
            if await self.booking_status(http, auth, booked, {"payment_requested"}):
                pay = {"payment_method": VISA}
                url = f"/bookings/{booking_id}/pay"
                await self.request(http, "pay", "POST", url, json=pay, headers=auth)
        elif kind == "cancel" and await self.booking_status(http, auth, booked, {"confirmed"}):
            url = f"/bookings/{booking_id}/cancel"
            await self.request(http, "cancel", "POST", url, headers=auth)

    async def replace_sold_out(self, http: httpx.AsyncClient, show: str) -> None:
        """A (partly) sold-out show leaves the rotation for a new one, as at a box office
        with a season of shows: the booking rate stays steady and old shows go quiet."""
        if show in self.replacing or show not in self.shows:
            return
        self.replacing.add(show)
        admin = {"Authorization": f"Bearer {self.config['admin']}"}
        shape = self.config["shape"]
        body = show_body(self.scheduled, shape["rows"], shape["ga"])
        self.scheduled += 1
        r = await self.request(http, "schedule", "POST", "/shows", json=body, headers=admin)
        if r is None or r.status_code != 201:
            self.replacing.discard(show)
            return
        new = r.json()["show_id"]
        url = f"/shows/{new}/open-sale"
        opened = await self.request(http, "open-sale", "POST", url, headers=admin)
        if opened is not None and opened.status_code < 300:
            self.shows[self.shows.index(show)] = new

    async def read(self, http: httpx.AsyncClient, auth: dict[str, str], show: str) -> None:
        kind, url = self.rng.choice(
            [
                ("show", f"/shows/{show}"),
                ("seats", f"/shows/{show}/seats"),
                ("mine", "/me/bookings"),
            ]
        )
        await self.request(http, f"get-{kind}", "GET", url, headers=auth)

    async def run(self) -> None:
        rate, seconds = float(self.config["rate"]), float(self.config["seconds"])
        kinds, weights = zip(*JOURNEYS.items(), strict=True)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        in_flight: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(
            base_url=self.config["url"], timeout=30, limits=limits
        ) as http:
            n = 0
            while (due := self.started + n / rate) < self.started + seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                n += 1
                if len(in_flight) >= 400:  # the system is far behind: say so, do not pile up
                    self.skipped += 1
                    continue
                kind = self.rng.choices(kinds, weights)[0]
                task = asyncio.create_task(self.journey(http, kind))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.gather(*in_flight)

    def result(self) -> dict[str, Any]:
        return {
            "seconds": time.monotonic() - self.started,
            "journeys": dict(self.journeys),
            "skipped_journeys": self.skipped,
            "statuses": {k: {str(s): n for s, n in c.items()} for k, c in self.statuses.items()},
            "per_minute": {str(m): dict(c) for m, c in sorted(self.per_minute.items())},
            "latency": {k: latency_summary(v) for k, v in self.latencies.items()},
            "transport_errors": dict(self.transport_errors),
            "shows_scheduled": self.scheduled,
        }


def loadgen_main(config_path: str, result_path: str) -> None:
    load = Load(json.loads(Path(config_path).read_text()))
    asyncio.run(load.run())
    Path(result_path).write_text(json.dumps(load.result()))


# --- the run -----------------------------------------------------------------------------------


def settle(system: System, timeout: float = 120) -> dict[str, Any]:
    """Wait until every follower of the log is at its head (or `timeout`)."""
    url = system.stack.endpoints.database_url
    assert url is not None
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ticketblitz_events")
            position = int(head.fetchone()[0])  # type: ignore[index]
            rows = conn.execute("SELECT name, position FROM follower_positions").fetchall()
            behind = {name: int(at) for name, at in rows if at < position}
            if not behind or time.monotonic() > deadline:
                statuses = conn.execute(
                    "SELECT status, count(*) FROM read.bookings GROUP BY status"
                ).fetchall()
                return {"head": position, "behind": behind, "bookings": dict(statuses)}
            time.sleep(1)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    with running_system(args) as system:
        console.print(f"system up in {system.data_dir}; setting up shows and customers ...")
        fixtures = setup(system, args)
        seconds = args.minutes * 60
        config = {"url": f"{system.api_url}/api/v1", "rate": args.rate, "seconds": seconds}
        config |= {"seed": args.seed, **fixtures}
        config_path = system.data_dir / "loadgen.json"
        result_path = system.data_dir / "loadgen-result.json"
        config_path.write_text(json.dumps(config))
        console.print(f"load: {args.rate} journeys/s for {args.minutes} min ...")
        loadgen = subprocess.Popen(
            [sys.executable, "-m", "bench.soak", "loadgen", str(config_path), str(result_path)]
        )

        async def watch() -> dict[str, list[tuple[float, float]]]:
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_memory(system, args.sample_every, stop))
            while loadgen.poll() is None and not sampler.done():
                await asyncio.sleep(1)
            stop.set()
            return await sampler

        samples = asyncio.run(watch())
        if loadgen.wait() != 0:
            raise RuntimeError(f"the load generator exited with status {loadgen.returncode}")
        load = json.loads(result_path.read_text())
        console.print("load done; waiting for the followers to catch up ...")
        settled = settle(system)
        started = time.monotonic()
        verified = system.run(["audit", "verify"])
        verify = {
            "exit_status": verified.returncode,
            "passed": verified.returncode == 0,
            "seconds": time.monotonic() - started,
            "output": verified.stdout.strip() + verified.stderr.strip(),
        }
        assert system.stack.endpoints.database_url is not None
        machine = machine_info(system.stack.endpoints.database_url)
    return {
        "parameters": vars(args),
        "machine": machine,
        "load_average_end": load_average(),
        "memory_mib": summarize_memory(samples),
        "memory_samples": samples,
        "load": load,
        "settled": settled,
        "verify": verify,
    }


def summarize_memory(samples: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    return {
        name: {
            "start": points[0][1],
            "end": points[-1][1],
            "max": max(v for _, v in points),
            "slope_per_min_after_1st_min": slope_per_minute(points),
            # Once bounded caches are full: what a leak would still show.
            "slope_per_min_2nd_half": slope_per_minute(points, points[-1][0] / 2),
            "at_half": next(v for t, v in points if t >= points[-1][0] / 2),
            "samples": len(points),
        }
        for name, points in samples.items()
    }


def unexpected(status: str) -> bool:
    return int(status) >= 400 and int(status) not in EXPECTED_ERRORS


def report(results: dict[str, Any]) -> None:
    memory = results["memory_mib"]
    print_table(
        "resident memory (MiB)",
        ["process", "start", "half-way", "end", "max", "MiB/min after 1st min", "2nd half"],
        [
            [
                name,
                *(fmt(m[column], 1) for column in ("start", "at_half", "end", "max")),
                fmt(m["slope_per_min_after_1st_min"], 2),
                fmt(m["slope_per_min_2nd_half"], 2),
            ]
            for name, m in memory.items()
        ],
    )
    load = results["load"]
    statuses = sorted({s for c in load["statuses"].values() for s in c}, key=int)
    print_table(
        f"answers by status ({load['seconds']:.0f} s, journeys {load['journeys']})",
        ["request", *statuses, "p50 ms", "p99 ms"],
        [
            [
                kind,
                *(fmt(counts.get(s, 0)) for s in statuses),
                *(fmt(load["latency"][kind][p], 1) for p in ("p50_ms", "p99_ms")),
            ]
            for kind, counts in sorted(load["statuses"].items())
        ],
    )
    print_table(
        "answers per minute",
        ["minute", "answers", "409", "429", "other 4xx/5xx"],
        [
            [
                minute,
                fmt(sum(counts.values())),
                fmt(counts.get("409", 0)),
                fmt(counts.get("429", 0)),
                fmt(sum(n for status, n in counts.items() if unexpected(status))),
            ]
            for minute, counts in load["per_minute"].items()
        ],
    )
    errors = {
        f"{kind} {status}": n
        for kind, counts in load["statuses"].items()
        for status, n in counts.items()
        if unexpected(status)
    }
    verify = results["verify"]
    console.print(f"unexpected error answers: {errors or 'none'}")
    console.print(f"shows scheduled (rotation included): {load['shows_scheduled']}")
    console.print(f"transport errors: {load['transport_errors'] or 'none'}")
    console.print(f"journeys skipped (system behind): {load['skipped_journeys']}")
    console.print(f"after the load: {results['settled']}")
    console.print(f"audit verify: {'passed' if verify['passed'] else 'FAILED'}")
    console.print(verify["output"], markup=False, highlight=False)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "loadgen":
        loadgen_main(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load lasts")
    parser.add_argument("--rate", type=float, default=5.0, help="journeys started per second")
    parser.add_argument(
        "--sample-every", type=float, default=5.0, help="seconds between RSS samples"
    )
    parser.add_argument("--hold-minutes", type=float, default=1.0, help="unpaid holds expire after")
    parser.add_argument("--shows", type=int, default=10, help="shows on sale at any time")
    parser.add_argument("--rows", type=int, default=40, help="rows of 25 seats per show")
    parser.add_argument("--ga", type=int, default=2000, help="general admission per show")
    parser.add_argument(
        "--show-cache-idle-seconds",
        type=float,
        default=300.0,
        help="TICKETBLITZ_SHOW_CACHE_IDLE_SECONDS of the API",
    )
    parser.add_argument(
        "--relay-cached-aggregates",
        type=int,
        default=10_000,
        help="TICKETBLITZ_RELAY_CACHED_AGGREGATES of the workers",
    )
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    results = soak(parser.parse_args())
    report(results)
    write_results("soak", results)


if __name__ == "__main__":
    main()
