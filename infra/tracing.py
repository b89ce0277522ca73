"""OpenTelemetry traces: the HTTP requests (FastAPI), the PostgreSQL (psycopg), Redis and HTTP
client (httpx: Stripe's emulator, Gemini) calls, and one booking as one trace across threads and
processes (docs/OBSERVABILITY.md).

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (e.g. `http://jaeger:4318`): then spans are
batched and sent over OTLP/HTTP, and every JSON log line written inside a span carries its
`trace_id` and `span_id` (infra/logs.py). The service is named by `OTEL_SERVICE_NAME`, else
`ticketblitz-<command>`. Tests pass their own exporter (the SDK's in-memory one).

The W3C trace context travels as a `traceparent` string: captured with each command queued for
a show's writer (commands/show_writer.py: a batch span linked to its commands, a decide span per
command), written beside each event in the log (the nullable `traceparent` column, never in the
event's state: the hash chain and `audit verify` do not see it), read back by log followers
(`LoggedEvent.traceparent`), sent in Kafka headers by the relay and picked up by the consumers.
Tracing off costs nothing of this: no spans, the column stays NULL.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from commands import show_writer

log = logging.getLogger(__name__)

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
# Probes and scrapes: many a minute, nothing to learn from their traces.
EXCLUDED_URLS = "/healthz,/readyz,/health,/metrics"

_provider: TracerProvider | None = None


def tracing_wanted() -> bool:
    return bool(os.environ.get(ENDPOINT_VARIABLE, "").strip())


def configure_tracing(
    service: str, exporter: SpanExporter | None = None, *, set_global: bool = True
) -> TracerProvider | None:
    """Start tracing this process (None, and nothing done, when it is not wanted): the OTLP
    exporter of the environment, or `exporter` (exported at once: tests)."""
    global _provider
    if exporter is None and not tracing_wanted():
        return None
    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if set_global:
        trace.set_tracer_provider(provider)
    # enable_commenter stays off: SQL comments would defeat prepared statements' caching.
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    show_writer.trace_with(provider.get_tracer(show_writer.__name__))
    log.info("tracing on: service %s, OTLP to %s", name, os.environ.get(ENDPOINT_VARIABLE))
    return provider


def stop_tracing() -> None:
    """Flush and stop (the libraries are no longer instrumented)."""
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return
    show_writer.trace_with(None)
    for instrumentor in (PsycopgInstrumentor(), RedisInstrumentor(), HTTPXClientInstrumentor()):
        instrumentor.uninstrument()
    provider.shutdown()


def instrument_app(app: Any) -> None:
    """Trace the app's requests, if this process traces (a no-op otherwise)."""
    if _provider is not None:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS
        )


# The trace context across threads and processes (the module's docstring).

TRACEPARENT = "traceparent"
_w3c = TraceContextTextMapPropagator()


def tracing_on() -> bool:
    """Whether this process traces: callers skip all tracing work otherwise (zero cost)."""
    return _provider is not None


def tracer(name: str) -> Tracer | None:
    """A tracer of this process's provider; None when it does not trace."""
    provider = _provider
    return None if provider is None else provider.get_tracer(name)


def traceparent_of(span_context: SpanContext) -> str | None:
    """The W3C `traceparent` of a span (None for an invalid one)."""
    if not span_context.is_valid:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def current_traceparent() -> str | None:
    """The current span's `traceparent`; None when not tracing or outside any span."""
    if _provider is None:
        return None
    return traceparent_of(trace.get_current_span().get_span_context())


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """A parent context for a span continuing the trace of `traceparent` (None: none given,
    or not a valid one, then a span starts under the current context)."""
    if not traceparent:
        return None
    found = _w3c.extract({TRACEPARENT: traceparent})
    if not trace.get_current_span(found).get_span_context().is_valid:
        return None
    return found


def span_context_of(traceparent: str | None) -> SpanContext | None:
    found = context_of(traceparent)
    return None if found is None else trace.get_current_span(found).get_span_context()


def event_traceparents(events: Sequence[Any]) -> list[str | None] | None:
    """The `traceparent` to store beside each event being saved: the show writer's decide span
    that made it (commands/show_writer.py passes them in the context), else the current span.
    None when there is none to store (not tracing: the column stays NULL)."""
    if _provider is None:
        return None
    current = current_traceparent()
    decided: dict[tuple[UUID, int], SpanContext] | None = otel_context.get_value(
        show_writer.DECISION_SPANS
    )  # type: ignore[assignment]
    if not decided:
        return None if current is None else [current] * len(events)
    found = [
        current if made is None else traceparent_of(made)
        for made in (decided.get((e.originator_id, e.originator_version)) for e in events)
    ]
    return found if any(found) else None


@contextmanager
def span_in_trace_of(
    name: str,
    traceparent: str | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
    tracer_name: str = __name__,
) -> Iterator[Span | None]:
    """A span (current meanwhile) whose parent is `traceparent`'s span (another thread or
    process); nothing at all when not tracing."""
    found = tracer(tracer_name)
    if found is None:
        yield None
        return
    with found.start_as_current_span(
        name, context=context_of(traceparent), kind=kind, attributes=attributes
    ) as span:
        yield span


@contextmanager
def linked_span(
    name: str, traceparents: Iterable[str | None], attributes: Mapping[str, str | int]
) -> Iterator[None]:
    """A span for work on behalf of many traces (a follower's page): a root span with a link
    to each. Nothing when not tracing, or when none of them is traced."""
    found = tracer(__name__)
    links = []
    if found is not None:
        links = [Link(c) for c in map(span_context_of, dict.fromkeys(traceparents)) if c]
    if found is None or not links:
        yield
        return
    with found.start_as_current_span(name, context=otel_context.Context(), links=links) as span:
        span.set_attributes(attributes)
        yield


# Kafka: the relay's PRODUCER spans and their headers, the consumers' CONSUMER spans.

KafkaHeaders = tuple[tuple[str, bytes], ...]


def start_producer_span(topic: str, traceparent: str | None, message_id: object) -> Span | None:
    """A PRODUCER span for one message (parent: the event's context), ended by
    `end_producer_spans` once the broker acknowledged (or failed) the batch; None when not
    tracing."""
    found = tracer(__name__)
    if found is None:
        return None
    return found.start_span(
        f"publish {topic}",
        context=context_of(traceparent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "publish",
            "messaging.destination.name": topic,
            "messaging.message.id": str(message_id),
        },
    )


def kafka_headers(span: Span | None) -> KafkaHeaders:
    """The headers that carry `span`'s context to the consumers (none without a span)."""
    traceparent = None if span is None else traceparent_of(span.get_span_context())
    return () if traceparent is None else ((TRACEPARENT, traceparent.encode()),)


def end_producer_spans(spans: Sequence[Span | None], error: BaseException | None) -> None:
    for span in spans:
        if span is None:
            continue
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()


def traceparent_in(headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    """The `traceparent` a Kafka record's headers carry, if any."""
    for key, value in headers or ():
        if key == TRACEPARENT and value:
            return value.decode("ascii", "replace")
    return None


@contextmanager
def consumer_span(
    topic: str, headers: Sequence[tuple[str, bytes | None]] | None, tracer_name: str
) -> Iterator[None]:
    """A CONSUMER span (current meanwhile) for handling one Kafka record, in the trace its
    headers carry; nothing when not tracing."""
    with span_in_trace_of(
        f"process {topic}",
        traceparent_in(headers) if _provider is not None else None,
        SpanKind.CONSUMER,
        {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
        },
        tracer_name,
    ):
        yield
