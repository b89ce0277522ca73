"""Prometheus metrics at /metrics: requests by route template and status, their latency, and
the read side's state (projection positions and lag, the store's head, cache use).

Each app has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import psycopg
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from psycopg_pool import PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commands.errors import StoreUnavailableError
from http_shell.container import Container

log = logging.getLogger(__name__)


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "ticketblitz_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "ticketblitz_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_template(scope)
            method = str(scope.get("method", ""))
            self.requests.labels(method, route, str(status)).inc()
            self.latency.labels(method, route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route's template (`/api/v1/shows/{show_id}`), rebuilt from the path and its
    parameters, so that ids never become label values; `unmatched` when no route matched."""
    if scope.get("route") is None:
        return "unmatched"
    path = str(scope.get("path", ""))
    names = {str(value): name for name, value in (scope.get("path_params") or {}).items()}
    if not names:
        return path
    return "/".join(f"{{{names[part]}}}" if part in names else part for part in path.split("/"))


class ReadSideCollector(Collector):
    """Reads the projections' state when scraped (nothing is sampled in between)."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def collect(self) -> Iterable[Metric]:
        read = self.container.read_side
        if read is None:
            return
        cache = CounterMetricFamily(
            "ticketblitz_read_cache", "cached reads by result", labels=["result"]
        )
        cache.add_metric(["hit"], read.cache.hits)
        cache.add_metric(["miss"], read.cache.misses)
        cache.add_metric(["error"], read.cache.errors)
        yield cache
        try:
            head, statuses = read.statuses()
        except (psycopg.Error, PoolTimeout, StoreUnavailableError) as error:
            log.warning("metrics: read side unavailable: %s", error)
            return
        yield GaugeMetricFamily(
            "ticketblitz_event_store_head_position", "last position of the event log", head
        )
        position = GaugeMetricFamily(
            "ticketblitz_projection_position",
            "log position a read model has applied",
            labels=["projection"],
        )
        lag_events = GaugeMetricFamily(
            "ticketblitz_projection_lag_events",
            "events a read model has not applied yet",
            labels=["projection"],
        )
        lag_seconds = GaugeMetricFamily(
            "ticketblitz_projection_lag_seconds",
            "age of the oldest event a read model has not applied yet",
            labels=["projection"],
        )
        for s in statuses:
            position.add_metric([s.projection], s.position)
            lag_events.add_metric([s.projection], s.lag_events)
            lag_seconds.add_metric([s.projection], s.lag_seconds)
        yield from (position, lag_events, lag_seconds)
        # Log followers stopped on an event they cannot apply (infra/log_follower.py): the
        # value is the attempts so far; a series exists only while the follower is stuck.
        failing = GaugeMetricFamily(
            "ticketblitz_follower_failing",
            "a log follower stopped on an event it cannot apply: attempts so far",
            labels=["follower", "position", "error"],
        )
        try:
            for f in read.follower_failures().values():
                failing.add_metric([f.name, str(f.position), f.error[:200]], f.attempts)
        except (psycopg.Error, PoolTimeout) as error:
            log.warning("metrics: follower failures unavailable: %s", error)
        yield failing


class PaymentCollector(Collector):
    """Payments reported for a booking that did not pay for it (recorded as PaymentMismatched,
    refunded), by reason, as this process's payment handlers recorded them."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def collect(self) -> Iterable[Metric]:
        mismatches = CounterMetricFamily(
            "ticketblitz_payment_mismatches",
            "payments that did not match their booking (never confirming it; refunded)",
            labels=["reason"],
        )
        for reason, count in sorted(self.container.payments.mismatch_counts().items()):
            mismatches.add_metric([reason], count)
        yield mismatches


def install_metrics(app: FastAPI, container: Container) -> None:
    registry = CollectorRegistry()
    registry.register(ReadSideCollector(container))
    registry.register(PaymentCollector(container))
    app.add_middleware(RequestMetrics, registry=registry)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
