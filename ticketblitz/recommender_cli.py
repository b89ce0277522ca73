"""`ticketblitz recommender ...`: rebuild, re-embed and inspect the recommender's tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from kafka.errors import KafkaError

from infra.event_store import PostgresEventStore
from infra.settings import Settings
from recommender.embedder import embedder_from_env
from recommender.runner import RebuildBusyError as RecommenderRebuildBusyError
from recommender.runner import RecommenderStatus, recommender_status, reembed
from recommender.runner import rebuild as rebuild_recommender
from ticketblitz.cli_support import (
    CliError,
    DataDir,
    console,
    database,
    event_store,
    reported_errors,
)

recommender_app = typer.Typer(no_args_is_help=True, help="The recommender's tables (recommender/).")


@contextmanager
def _recommender(data_dir: Path | None) -> Iterator[tuple[Settings, PostgresEventStore]]:
    """Settings and the event store for `recommender` commands; Kafka errors are one line."""
    with database(data_dir) as settings, event_store(settings) as store:
        try:
            yield settings, store
        except KafkaError as error:
            raise CliError(f"Kafka at {settings.kafka_bootstrap}: {error!r}") from None


@recommender_app.command("rebuild")
def recommender_rebuild(data_dir: DataDir = None) -> None:
    """Read the integration events again from the beginning of the Kafka topics into fresh
    tables and embed the shows, then swap the tables in (a running consumer goes on from them).
    Interrupted, it starts over when run again."""
    with reported_errors(), _recommender(data_dir) as (settings, store):
        if settings.kafka_bootstrap is None:
            raise CliError(
                "TICKETBLITZ_KAFKA_BOOTSTRAP is not set (`ticketblitz up` prints its broker's)"
            )
        try:
            report = rebuild_recommender(store, settings, embedder_from_env())
        except RecommenderRebuildBusyError as error:
            raise CliError(str(error)) from None
        except KeyboardInterrupt:
            console.print("interrupted: run the same command again (it starts over)")
            raise typer.Exit(130) from None
        typer.echo(
            f"{report.records:,} records read again in {report.seconds:.1f} s: {report.shows:,}"
            f" shows, {report.pending:,} waiting for their embedding; caught up with the event"
            f" log to position {report.watermark:,}"
        )


@recommender_app.command("reembed")
def recommender_reembed(data_dir: DataDir = None) -> None:
    """Re-embed every show that another model than the configured one embedded, through the
    pending queue (Kafka is not read). If the embedder fails, the rest waits in the queue."""
    with reported_errors(), _recommender(data_dir) as (_, store):
        embedder = embedder_from_env()
        report = reembed(store, embedder)
        if report.error is not None:
            raise CliError(
                f"the embedder {embedder.model_name} failed ({report.error}): {report.embedded}"
                f" shows re-embedded, {report.pending} wait in rec.pending_embeddings (the"
                " recommender retries them)"
            )
        typer.echo(
            f"{report.embedded:,} shows embedded with {embedder.model_name}"
            f" ({report.queued:,} queued); {report.pending:,} pending"
        )


@recommender_app.command("status")
def recommender_status_command(data_dir: DataDir = None) -> None:
    """Offsets and lag per topic partition, the position reached in the event log, pending
    embeddings, skipped records and shows per embedding model."""
    with reported_errors(), _recommender(data_dir) as (settings, store):
        status = recommender_status(store, settings, embedder_from_env())
        for line in _status_lines(status):
            typer.echo(line)


def _status_lines(status: RecommenderStatus) -> list[str]:
    tables = status.tables
    lines = [f"{'topic':<40} {'partition':>9} {'offset':>10} {'high watermark':>14} {'lag':>8}"]
    for p in status.partitions:
        unknown = p.highwater is None
        lines.append(
            f"{p.topic:<40} {p.partition:>9} {p.offset:>10,}"
            f" {'?' if unknown else f'{p.highwater:,}':>14} {'?' if unknown else f'{p.lag:,}':>8}"
        )
    if status.kafka_error is not None:
        lines.append(f"Kafka: {status.kafka_error}")
    models = ", ".join(
        f"{model or 'not embedded yet'}: {n:,}" for model, n in tables.models.items()
    )
    lines += [
        f"event log: position {tables.watermark:,} of {status.head:,}"
        f" (lag {max(status.head - tables.watermark, 0):,} events)",
        f"pending embeddings: {tables.pending:,} ({tables.pending_due:,} due now)",
        f"skipped records: {tables.skipped:,}",
        f"shows by model (configured: {status.model}): {models or 'none'}",
    ]
    return lines
