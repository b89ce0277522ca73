"""OpenTelemetry traces: the HTTP requests (FastAPI), and the PostgreSQL (psycopg), Redis and
HTTP client (httpx: Stripe's emulator, Gemini) calls made while serving them.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (e.g. `http://jaeger:4318`): then spans are
batched and sent over OTLP/HTTP, and every JSON log line written inside a span carries its
`trace_id` and `span_id` (infra/logs.py). The service is named by `OTEL_SERVICE_NAME`, else
`ticketblitz-<command>`. Tests pass their own exporter (the SDK's in-memory one).

Not carried yet: the trace context through the event log's metadata and Kafka's headers, so
the show writer's batches, the relay, the saga and the notifier are not in the request's trace.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

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
    log.info("tracing on: service %s, OTLP to %s", name, os.environ.get(ENDPOINT_VARIABLE))
    return provider


def stop_tracing() -> None:
    """Flush and stop (the libraries are no longer instrumented)."""
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return
    for instrumentor in (PsycopgInstrumentor(), RedisInstrumentor(), HTTPXClientInstrumentor()):
        instrumentor.uninstrument()
    provider.shutdown()


def instrument_app(app: Any) -> None:
    """Trace the app's requests, if this process traces (a no-op otherwise)."""
    if _provider is not None:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS
        )
