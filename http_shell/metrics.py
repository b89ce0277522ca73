"""Prometheus metrics at /metrics: requests by route template and status, their latency, and
the read side's state (projection positions and lag, the store's head, cache use).

Each app has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable

import psycopg
from eventsourcing.domain import Aggregate
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from psycopg_pool import PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commands.errors import StoreUnavailableError
from commands.ports import EventLog
from domain.booking import Booking, event_name
from domain.door import DoorList
from domain.waitlist import WaitingList
from http_shell.container import Container
from infra.event_store import EVENTS_TABLE
from projections.positions import ProjectionStatus, projection_statuses

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
        yield from _projection_metrics(head, statuses)
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


def _projection_metrics(head: int, statuses: Iterable[ProjectionStatus]) -> Iterable[Metric]:
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


# --- business counters (the workers' and projection runners' ops port) ---------------------

# What the business counters count: the log's events of these types, by counter name.
BUSINESS_EVENTS: dict[str, tuple[type[Aggregate], str, str]] = {
    "ticketblitz_holds": (Booking, "Placed", "bookings placed (seats or tickets held)"),
    "ticketblitz_confirmations": (Booking, "Confirmed", "bookings confirmed (paid)"),
    "ticketblitz_declines": (Booking, "PaymentFailed", "payments declined"),
    "ticketblitz_expiries": (Booking, "Expired", "holds expired unpaid"),
    "ticketblitz_refunds": (Booking, "Refunded", "bookings refunded"),
    "ticketblitz_checkins": (DoorList, "TicketAdmitted", "tickets admitted at the door"),
    "ticketblitz_waitlist_offers": (WaitingList, "OfferMade", "seats offered to waiting fans"),
}


def _topic(aggregate: type[Aggregate], name: str) -> str:
    """The log's topic of an aggregate's event (as the event store writes it)."""
    return f"{aggregate.__module__}:{event_name(aggregate, name)}"


CATCH_UP_LIMIT = 1_000_000  # events counted per scrape at most (the rest at the next ones)


class BusinessCounters(Collector):
    """Counts the business events appended to the log since this process started, read when
    scraped: the events' types only (`GROUP BY topic`: nothing is decoded), from where the
    previous scrape stopped. Every process that exports them counts the same log, so
    dashboards take the `max` over instances, not the sum."""

    def __init__(self, store: EventLog) -> None:
        self.store = store
        self._topics = {_topic(a, e): name for name, (a, e, _) in BUSINESS_EVENTS.items()}
        self._counts = dict.fromkeys(BUSINESS_EVENTS, 0)
        self._lock = threading.Lock()
        self._position: int | None = None
        with contextlib.suppress(psycopg.Error, PoolTimeout, StoreUnavailableError):
            self._position = self._head()  # else at the first scrape that reaches the store

    def _head(self) -> int:
        with self.store.connection() as conn:
            row = conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")
            return int(row.fetchone()[0])  # type: ignore[index]

    def catch_up(self) -> None:
        with self._lock:
            if self._position is None:
                self._position = self._head()
                return
            with self.store.connection() as conn:
                head = int(
                    conn.execute(
                        f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"
                    ).fetchone()[0]  # type: ignore[index]
                )
                upto = min(head, self._position + CATCH_UP_LIMIT)
                rows = conn.execute(
                    f"SELECT topic, count(*) FROM {EVENTS_TABLE} "
                    "WHERE notification_id > %s AND notification_id <= %s AND topic = ANY(%s) "
                    "GROUP BY topic",
                    (self._position, upto, list(self._topics)),
                ).fetchall()
            for topic, count in rows:
                self._counts[self._topics[topic]] += int(count)
            self._position = upto

    def collect(self) -> Iterable[Metric]:
        try:
            self.catch_up()
        except (psycopg.Error, PoolTimeout, StoreUnavailableError) as error:
            log.warning("metrics: the event log is unavailable: %s", error)  # counts kept
        for name, (_, _, help_text) in BUSINESS_EVENTS.items():
            yield CounterMetricFamily(name, help_text, value=self._counts[name])


class MailCounter(logging.Handler):
    """Counts the e-mails this process sent, by kind, from the mailer's log line for each
    (infra/mailer.py: `sent <kind> to <address> (<message id>)`)."""

    MAILER_LOGGER = "infra.mailer"

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(level=logging.INFO)
        self.sent = Counter(
            "ticketblitz_emails_sent", "e-mails sent, by kind", ["kind"], registry=registry
        )

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "sent %s to %s (%s)" and isinstance(record.args, tuple) and record.args:
            self.sent.labels(str(record.args[0])[:64]).inc()

    def install(self) -> MailCounter:
        mailer = logging.getLogger(self.MAILER_LOGGER)
        mailer.addHandler(self)
        if mailer.getEffectiveLevel() > logging.INFO:  # a quieter log must not stop the count
            mailer.setLevel(logging.INFO)
        return self

    def uninstall(self) -> None:
        logging.getLogger(self.MAILER_LOGGER).removeHandler(self)


class ProjectionCollector(Collector):
    """The read models' positions and lag, for a process that runs them without an API."""

    def __init__(self, store: EventLog) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        try:
            with self.store.connection() as conn:
                head, statuses = projection_statuses(self.store, conn)
        except (psycopg.Error, PoolTimeout, StoreUnavailableError) as error:
            log.warning("metrics: read side unavailable: %s", error)
            return
        yield from _projection_metrics(head, statuses)
