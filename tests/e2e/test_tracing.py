"""Traces of a booking request (OpenTelemetry, the SDK's in-memory exporter).

Given the APIs traced (infra/tracing.py) on the session's servers, when a fan books,
then the request is one trace: a server span `POST /api/v1/bookings` answered 201, and the
Redis and PostgreSQL calls made while serving it are spans of the same trace, under it.
Probes (/healthz, /readyz) are not traced.

And given the API and the workers traced in one process, when a fan books and pays, then the
booking is one trace across threads, the event log and Kafka: the show writer's decision, the
payment saga's steps, the relay's PRODUCER span, the notifier's CONSUMER span and its
`smtp.send` (the kind of e-mail, never the address); the booking's events carry the trace in
the log's `traceparent` column, beside them, not in them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from domain.account import Account
from infra import tracing
from infra.event_store import APPEND_FUNCTION, EVENTS_TABLE, PostgresEventStore
from infra.tracing import configure_tracing, stop_tracing
from tests.e2e.conftest import Api, served, settings_for_tests
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    in_days,
    new_database,
    running_system,
    show_starting,
    wait_until,
)
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def traced(
    endpoints: StackEndpoints, stack_dir: Path
) -> Iterator[tuple[Api, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    assert configure_tracing("ticketblitz-tests", exporter, set_global=False) is not None
    try:
        container = bootstrap(settings_for_tests(endpoints, stack_dir / "tracing"))
        try:
            with served(container) as api:  # create_app instruments it
                yield api, exporter
        finally:
            container.close()
    finally:
        stop_tracing()


def attribute(span: ReadableSpan, *names: str) -> object:
    attributes = span.attributes or {}
    return next((attributes[n] for n in names if n in attributes), None)


def test_one_booking_request_is_one_trace_with_its_redis_and_database_calls(
    traced: tuple[Api, InMemorySpanExporter],
):
    api, exporter = traced
    show_id = api.new_show(rows=1, seats_per_row=10)
    customer = api.new_customer()
    exporter.clear()

    r = api.http.post(
        "/bookings",
        json={"show_id": show_id, "quantity": 2},
        headers={"Authorization": customer["Authorization"], "Idempotency-Key": str(uuid4())},
    )
    assert r.status_code == 201, r.text

    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.name == "POST /api/v1/bookings"
    assert attribute(server, "http.status_code", "http.response.status_code") == 201
    trace_id = server.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}

    def under_server(span: ReadableSpan) -> bool:
        while span.parent is not None and span.parent.span_id in by_id and span is not server:
            span = by_id[span.parent.span_id]
        return span is server

    # The client's span (this test's httpx, traced too) is the root: its traceparent header
    # made the server's span its child, so a caller's trace continues into the API.
    (client,) = [s for s in in_trace if s.kind is SpanKind.CLIENT and s.name == "POST"]
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    serving = [s for s in in_trace if s is not client]
    assert all(under_server(s) for s in serving)
    systems = {attribute(s, "db.system", "db.system.name") for s in serving}
    assert "redis" in systems  # rate limit, idempotency record
    assert "postgresql" in systems


def test_probes_are_not_traced(traced: tuple[Api, InMemorySpanExporter]):
    api, exporter = traced
    exporter.clear()
    assert httpx.get(api.server_url + "/healthz", timeout=30).status_code == 200
    # Ready or not (this app's read models may lag the session's other writers): untraced.
    assert httpx.get(api.server_url + "/readyz", timeout=30).status_code in (200, 503)
    assert not [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


@pytest.fixture(scope="module")
def traced_system(
    traced: tuple[Api, InMemorySpanExporter], endpoints: StackEndpoints, stack_dir: Path
) -> Iterator[SagaSystem]:
    """APIs and workers (saga, relay, notifier) in this process, traced (`traced` first)."""
    with running_system(endpoints, stack_dir / "traced-saga") as system:
        yield system


def test_one_booking_is_one_trace_across_processes(
    traced: tuple[Api, InMemorySpanExporter], traced_system: SagaSystem, mailbox: Mailbox
):
    _, exporter = traced
    api = traced_system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    exporter.clear()

    r = api.http.post(
        "/bookings",
        json={"show_id": show_id, "seats": ["A-1-1"], "payment_method": VISA},
        headers={"Authorization": fan["Authorization"]},
    )
    assert r.status_code == 201, r.text
    booking_id = r.json()["booking_id"]
    mail = mailbox.wait_for(lambda m: m["To"] == fan["email"], timeout=30)
    assert "confirmed" in mail["Subject"]

    (server,) = [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.SERVER and s.name == "POST /api/v1/bookings"
    ]
    trace_id = server.context.trace_id

    def whole_trace() -> list[ReadableSpan] | None:
        """The trace once the e-mail's span and all its ancestors ended (a parent ends after
        its children): every span's parent in it, but the root's."""
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        ids = {s.context.span_id for s in spans}
        roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
        sent = any(s.name == "smtp.send" for s in spans)
        return spans if sent and len(roots) == 1 else None

    spans = wait_until(whole_trace, 15, "the e-mail's span in the booking's trace")
    by_id = {s.context.span_id: s for s in spans}
    names = {s.name for s in spans}
    assert "show-writer.decide" in names
    steps = {attribute(s, "step") for s in spans if s.name.startswith("payment-saga ")}
    assert {"request payment", "charge"} <= steps
    producers = [s for s in spans if s.kind is SpanKind.PRODUCER]
    assert traced_system.bookings_topic in {
        attribute(s, "messaging.destination.name") for s in producers
    }
    (send,) = [s for s in spans if s.name == "smtp.send"]
    assert attribute(send, "email.kind") == "booking.confirmed"
    # The e-mail's span is under the notifier's CONSUMER span, itself under a PRODUCER span.
    assert send.parent is not None
    consumer = by_id[send.parent.span_id]
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.parent is not None
    assert by_id[consumer.parent.span_id].kind is SpanKind.PRODUCER
    # One tree, from the client's request.
    (root,) = [s for s in spans if s.parent is None or s.parent.span_id not in by_id]
    assert root.kind is SpanKind.CLIENT
    # No personal data in the trace: the address is nowhere.
    assert not [s for s in spans if fan["email"] in repr(dict(s.attributes or {}))]

    # The log keeps the trace beside each of the booking's events (Placed ... Confirmed).
    assert traced_system.settings.database_url is not None
    with psycopg.connect(traced_system.settings.database_url) as conn:
        rows = conn.execute(
            f"SELECT traceparent FROM {EVENTS_TABLE} WHERE originator_id = %s "
            "ORDER BY originator_version",
            (booking_id,),
        ).fetchall()
    assert len(rows) >= 3
    assert all(row[0] is not None and row[0].split("-")[1] == f"{trace_id:032x}" for row in rows)


def a_customer(name: str) -> Account:
    return Account(
        email=f"{uuid4().hex}@example.com", name=name, password_hash="h", role="customer"
    )


def test_an_event_saved_outside_any_trace_stores_none(
    traced: tuple[Api, InMemorySpanExporter], traced_system: SagaSystem
):
    """Tracing on, but nothing to continue (no current span): the column stays NULL; inside
    a span, the event keeps that span's context."""
    store = traced_system.store
    outside = a_customer("A")
    store.save(outside)
    inside = a_customer("B")
    tracer = tracing.tracer(__name__)
    assert tracer is not None  # `traced`
    with tracer.start_as_current_span("a test's span") as span:
        store.save(inside)
        expected = tracing.current_traceparent()
    assert expected is not None and f"{span.get_span_context().span_id:016x}" in expected
    with store.connection() as conn:
        rows = dict(
            conn.execute(
                f"SELECT originator_id, traceparent FROM {EVENTS_TABLE} "
                "WHERE originator_id = ANY(%s)",
                ([outside.id, inside.id],),
            ).fetchall()
        )
    assert rows == {outside.id: None, inside.id: expected}


def test_a_database_of_the_previous_release_gains_the_column_and_keeps_the_old_append(
    endpoints: StackEndpoints,
):
    """An existing log (no `traceparent` column, the 4-argument append function only) is
    upgraded when a store opens it; a process of the previous release, still calling the
    4-argument function during a rolling upgrade, goes on appending (no trace context)."""
    assert endpoints.database_url is not None
    url = new_database(endpoints.database_url)
    first = PostgresEventStore(url, pool_size=1)
    first.close()
    with psycopg.connect(url, autocommit=True) as conn:  # back to the previous release's shape
        conn.execute(f"DROP FUNCTION {APPEND_FUNCTION}(uuid[], bigint[], text[], bytea[], text[])")
        conn.execute(f"ALTER TABLE {EVENTS_TABLE} DROP COLUMN traceparent")

    store = PostgresEventStore(url, pool_size=1)
    try:
        account = a_customer("A")
        (event,) = account.collect_events()
        stored = store.mapper().to_stored_event(event)
        with store.connection() as conn:  # what the previous release sends
            conn.execute(
                f"SELECT {APPEND_FUNCTION}(%b, %b, %b, %b)",
                ([stored.originator_id], [1], [stored.topic], [stored.state]),
            )
            rows = conn.execute(f"SELECT originator_id, traceparent FROM {EVENTS_TABLE}").fetchall()
        assert rows == [(account.id, None)]
        assert store.get(account.id, Account).name == "A"
    finally:
        store.close()
