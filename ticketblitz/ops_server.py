"""The ops port of `ticketblitz workers` and `ticketblitz projections run`: `/healthz`,
`/readyz` and `/metrics` (Prometheus text) on `TICKETBLITZ_OPS_PORT` (0: off).

- `/healthz`: 200 while every worker (or runner) thread of the process is alive, else 503.
- `/readyz`: 200 while the servers the process needs answer (PostgreSQL; Kafka for the
  workers; the read models' lag for the projection runners), else 503 problem+json naming
  what is not ready (http_shell/health.py).
- `/metrics`: the business counters (holds, confirmations, declines, expiries, refunds,
  check-ins, waiting-list offers, e-mails sent), and the read models' lag for the runners.

A plain `http.server` on a thread of its own: nothing of this port shares the workers' pools.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest

from commands.ports import EventLog
from http_shell.health import Readiness
from http_shell.metrics import BusinessCounters, MailCounter, ProjectionCollector
from http_shell.problems import PROBLEM_JSON, TYPE_BASE
from infra.settings import Settings
from projections.positions import projection_statuses

log = logging.getLogger(__name__)


class OpsServer:
    def __init__(
        self,
        host: str,
        port: int,
        alive: Callable[[], bool],
        readiness: Readiness,
        registry: CollectorRegistry,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.alive = alive
        self.readiness = readiness
        self.registry = registry
        self._on_close = on_close
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ops-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("ops port %s: /healthz, /readyz, /metrics", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._on_close()

    def answer(self, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        """(status, content type, body, extra headers) of a GET."""
        if path == "/healthz":
            if self.alive():
                return _json(200, {"status": "alive"})
            return _problem(503, "not-alive", "a worker thread of this process has ended")
        if path == "/readyz":
            ready, body = self.readiness.report()
            if ready:
                return _json(200, body)
            detail = self.readiness.not_ready_detail(body)
            return _problem(503, "not-ready", detail, checks=body["checks"])
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry), {}
        return _problem(404, "not-found", f"{path[:100]} is not here (/healthz, /readyz, /metrics)")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    status, kind, body, headers = ops.answer(self.path.split("?", 1)[0])
                except Exception:
                    log.exception("ops port: %s failed", self.path[:100])
                    status, kind, body, headers = _problem(
                        500, "internal-error", "the ops port failed"
                    )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("ops port: " + format, *args)

        return Handler


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", json.dumps(body).encode(), {}


def _problem(
    status: int, kind: str, detail: str, **extra: Any
) -> tuple[int, str, bytes, dict[str, str]]:
    body = {
        "type": TYPE_BASE + kind,
        "title": kind.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"Retry-After": "5"} if status == 503 else {}
    return status, PROBLEM_JSON, json.dumps(body).encode(), headers


def workers_ops_server(
    settings: Settings, store: EventLog, alive: Callable[[], bool]
) -> OpsServer | None:
    """The ops port of `ticketblitz workers` (None when TICKETBLITZ_OPS_PORT is 0)."""
    if settings.ops_port == 0:
        return None
    registry = CollectorRegistry()
    registry.register(BusinessCounters(store))
    mail = MailCounter(registry).install()
    readiness = Readiness(settings, redis_needed=False)
    return OpsServer(
        settings.ops_host, settings.ops_port, alive, readiness, registry, mail.uninstall
    ).start()


def projections_ops_server(
    settings: Settings, store: EventLog, alive: Callable[[], bool]
) -> OpsServer | None:
    """The ops port of `ticketblitz projections run` (None when TICKETBLITZ_OPS_PORT is 0)."""
    if settings.ops_port == 0:
        return None

    def statuses() -> Any:
        with store.connection() as conn:
            return projection_statuses(store, conn)

    registry = CollectorRegistry()
    registry.register(ProjectionCollector(store))
    readiness = Readiness(settings, statuses, redis_needed=False, kafka_needed=False)
    return OpsServer(settings.ops_host, settings.ops_port, alive, readiness, registry).start()
