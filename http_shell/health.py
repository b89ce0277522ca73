"""Liveness and readiness: `/healthz` (the process answers: no I/O) and `/readyz` (the servers
it needs answer, the read models keep up), for the APIs and the ops port of the workers and
projection runners (ticketblitz/ops_server.py).

Each probe opens a connection of its own with a short timeout rather than borrowing from the
pools: a pool whose connections all hang, or that waits for a lost server, must not make the
probe hang too, and a probe that succeeds proves that a new connection can be made.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from http_shell.container import Container
from http_shell.problems import problem
from infra.settings import Settings
from projections.positions import ProjectionStatus

PROBE_TIMEOUT_SECONDS = 2.0

Statuses = Callable[[], tuple[int, list[ProjectionStatus]]]


@dataclass(frozen=True)
class Check:
    name: str  # postgres, redis, kafka, projections
    ok: bool
    detail: str


def check_postgres(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Check:
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout))) as conn:
            conn.execute("SELECT 1")
        return Check("postgres", True, "ok")
    except (psycopg.Error, OSError) as error:
        return Check("postgres", False, _first_line(error))


def check_redis(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Check:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        return Check("redis", True, "ok")
    except (redis.RedisError, OSError) as error:
        return Check("redis", False, _first_line(error))
    finally:
        client.close()


def check_kafka(bootstrap: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Check:
    """Ready when one bootstrap server answers a Kafka ApiVersions request (a listening port
    alone could be anything)."""
    errors = []
    for address in (a.strip() for a in bootstrap.split(",") if a.strip()):
        host, _, port = address.rpartition(":")
        try:
            _api_versions(host.strip("[]") or "localhost", int(port), timeout)
            return Check("kafka", True, "ok")
        except (OSError, ValueError) as error:
            errors.append(f"{address}: {_first_line(error)}")
    return Check("kafka", False, "; ".join(errors) or "no bootstrap server configured")


def _api_versions(host: str, port: int, timeout: float) -> None:
    """Send ApiVersions v0 (key 18) and read the answer's correlation id back."""
    client_id = b"ticketblitz-readyz"
    correlation = 0x7B1D
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.settimeout(timeout)
        conn.sendall(struct.pack(">i", len(body)) + body)
        head = _read_exactly(conn, 8)
        size, answered = struct.unpack(">ii", head)
        if answered != correlation or size < 4:
            raise ValueError("not a Kafka broker's answer")


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the connection was closed")
        data += chunk
    return data


def check_projections(statuses: Statuses, max_lag_seconds: float) -> Check:
    """Ready while every read model is less than `max_lag_seconds` behind the log (and none
    is stopped on an event it cannot apply)."""
    try:
        _, found = statuses()
    except Exception as error:  # any failure to read the state is "not ready", never a 500
        return Check("projections", False, f"state unavailable: {_first_line(error)}")
    behind = [
        f"{s.projection} {s.lag_seconds:.0f}s behind"
        for s in found
        if s.lag_seconds > max_lag_seconds
    ]
    failing = [f"{s.projection} stopped at {s.failed_position}" for s in found if s.failing]
    if behind or failing:
        return Check("projections", False, ", ".join(behind + failing))
    return Check("projections", True, "ok")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


class Readiness:
    """The checks of one process: PostgreSQL always; Redis and Kafka when configured; the read
    models' lag when the process has them (`statuses`). Run in parallel, each bounded."""

    def __init__(
        self,
        settings: Settings,
        statuses: Statuses | None = None,
        *,
        redis_needed: bool = True,
        kafka_needed: bool = True,
        timeout: float = PROBE_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.statuses = statuses
        self.redis_needed = redis_needed
        self.kafka_needed = kafka_needed
        self.timeout = timeout

    def checks(self) -> list[Check]:
        s = self.settings
        probes: list[Callable[[], Check]] = []
        if s.database_url is not None:
            url = s.database_url
            probes.append(lambda: check_postgres(url, self.timeout))
        if self.redis_needed and s.redis_url is not None:
            redis_url = s.redis_url
            probes.append(lambda: check_redis(redis_url, self.timeout))
        if self.kafka_needed and s.kafka_bootstrap is not None:
            bootstrap = s.kafka_bootstrap
            probes.append(lambda: check_kafka(bootstrap, self.timeout))
        with ThreadPoolExecutor(max_workers=len(probes) or 1) as pool:
            found = list(pool.map(lambda probe: probe(), probes))
        statuses = self.statuses
        if statuses is not None:
            if all(c.ok for c in found if c.name == "postgres"):
                found.append(check_projections(statuses, s.ready_max_projection_lag_seconds))
            else:
                found.append(Check("projections", False, "PostgreSQL is unreachable"))
        return found

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Whether ready, and a JSON-able account: `{"checks": {name: {ok, detail}}, ...}`."""
        started = time.monotonic()
        found = self.checks()
        ready = all(c.ok for c in found)
        body: dict[str, Any] = {
            "status": "ready" if ready else "not-ready",
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in found},
            "took_ms": round((time.monotonic() - started) * 1000),
        }
        return ready, body

    def not_ready_detail(self, body: dict[str, Any]) -> str:
        failed = [f"{name} ({c['detail']})" for name, c in body["checks"].items() if not c["ok"]]
        return "not ready: " + "; ".join(failed)


def install_health(app: FastAPI, container: Container) -> None:
    """`GET /healthz` and `GET /readyz` on an API (the older `/health` stays as it is)."""
    read = container.read_side
    readiness = Readiness(container.settings, None if read is None else read.statuses)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process answers (no I/O: a liveness probe)."""
        return {"status": "alive"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "a server it needs is unreachable, or read models lag"}},
    )
    def readyz() -> Response:
        """PostgreSQL, Redis and Kafka (when configured) answer, and the read models are less
        than `TICKETBLITZ_READY_MAX_PROJECTION_LAG_SECONDS` behind the log."""
        ready, body = readiness.report()
        if ready:
            return JSONResponse(body)
        detail = readiness.not_ready_detail(body)
        return problem(503, "not-ready", detail, {"Retry-After": "5"}, checks=body["checks"])
