"""Traces of a booking request (OpenTelemetry, the SDK's in-memory exporter).

Given the APIs traced (infra/tracing.py) on the session's servers, when a fan books,
then the request is one trace: a server span `POST /api/v1/bookings` answered 201, and the
Redis and PostgreSQL calls made while serving it are spans of the same trace, under it.
Probes (/healthz, /readyz) are not traced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from infra.tracing import configure_tracing, stop_tracing
from tests.e2e.conftest import Api, served, settings_for_tests
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints

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
    for probe in ("/healthz", "/readyz"):
        assert httpx.get(api.server_url + probe, timeout=30).status_code == 200
    assert not [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
