"""`ticketblitz`: the single entry point for every operation."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import psycopg
import typer
import uvicorn
from eventsourcing.persistence import PersistenceError
from kafka.errors import KafkaError
from pydantic import ValidationError
from rich.console import Console

from audit.cli import audit_app
from audit.worker import with_hash_chain
from commands.errors import StoreUnavailableError
from infra.bench_cli import BENCH_CONTEXT, bench
from infra.bootstrap import ConfigurationError, Container, bootstrap
from infra.demo import DEMO_ADMIN, DEMO_CUSTOMER, load_demo
from infra.embedded import EmbeddedStack
from infra.event_store import PostgresEventStore
from infra.http_server import KEEP_ALIVE_SECONDS
from infra.log_follower import dead_letters, follower_failures
from infra.malloc_arenas import limit_malloc_arenas
from infra.payments import register_emulator_webhook, webhook_secret_for
from infra.settings import Settings
from infra.web import APIS, create_app
from process_managers.kafka_relay import rewind
from process_managers.workers import Workers, build_workers
from projections.console import failures_tables, rebuild_with_progress, report_line, status_table
from projections.generations import ensure_read_side
from projections.positions import projection_statuses
from projections.rebuild import RebuildBusyError
from projections.registry import UnknownProjectionError, projection_kinds
from projections.runner import ProjectionRunners
from recommender.embedder import embedder_from_env
from recommender.runner import RebuildBusyError as RecommenderRebuildBusyError
from recommender.runner import RecommenderStatus, recommender_status, reembed
from recommender.runner import rebuild as rebuild_recommender
from recommender.worker import with_recommender

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
relay_app = typer.Typer(no_args_is_help=True, help="The relay of integration events to Kafka.")
app.add_typer(relay_app, name="relay")
projections_app = typer.Typer(no_args_is_help=True, help="The read models (projections/).")
app.add_typer(projections_app, name="projections")
app.add_typer(audit_app, name="audit")
recommender_app = typer.Typer(no_args_is_help=True, help="The recommender's tables (recommender/).")
app.add_typer(recommender_app, name="recommender")
app.command(context_settings=BENCH_CONTEXT)(bench)
console = Console(stderr=True)

Port = Annotated[int, typer.Option(min=1, max=65535, help="HTTP port for the APIs")]
Host = Annotated[str, typer.Option(help="interface to listen on")]


class CliError(Exception):
    """Reported as one line on stderr with exit status 2."""


def fail(message: str) -> None:
    """One line on stderr (never wrapped, whatever the terminal width)."""
    typer.echo(f"ticketblitz: error: {' '.join(message.split())}", err=True)


@contextmanager
def reported_errors() -> Iterator[None]:
    try:
        yield
    except (
        CliError,
        ConfigurationError,
        StoreUnavailableError,
        RuntimeError,
        OSError,
        psycopg.Error,
        PersistenceError,  # the event store library's own wrapper of database errors
    ) as error:
        fail(
            f"the database is unreachable or refused: {error}"
            if isinstance(error, (psycopg.Error, PersistenceError))
            else str(error)
        )
        raise typer.Exit(2) from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        fail(f"invalid setting {where}: {first['msg']}")
        raise typer.Exit(2) from None


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise CliError(f"port {port} on {host} is already in use (try --port)") from None


def _serve(container: Container, host: str, port: int, apis: tuple[str, ...] = APIS) -> None:
    uvicorn.run(
        create_app(container, apis),
        host=host,
        port=port,
        log_level="info",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        proxy_headers=False,  # it believes loopback's X-Forwarded-For: see client_address
    )


@app.command()
def up(
    port: Port = 8080,
    host: Host = "127.0.0.1",
    demo: Annotated[bool, typer.Option(help="load demo shows and accounts")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="where embedded data lives")] = None,
) -> None:
    """Start the embedded stack for every server not configured, then serve the APIs."""
    with reported_errors():
        overrides: dict[str, object] = {"demo": demo}
        if data_dir is not None:
            overrides["data_dir"] = data_dir
        settings = Settings(**overrides)  # type: ignore[arg-type]
        _check_port_free(host, port)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        stack = EmbeddedStack(
            settings.data_dir.resolve(),
            postgres=settings.database_url is None,
            kafka=settings.kafka_bootstrap is None,
            redis=settings.redis_url is None,
            stripe=settings.stripe_api_base is None,
            smtp=settings.smtp_host is None,
        )
        console.print("starting the embedded stack ...")
        endpoints = stack.start()
        embedded_stripe = settings.stripe_api_base is None
        embedded_kafka = settings.kafka_bootstrap is None
        try:
            settings = settings.model_copy(
                update={
                    "database_url": settings.database_url or endpoints.database_url,
                    "kafka_bootstrap": settings.kafka_bootstrap or endpoints.kafka_bootstrap,
                    "redis_url": settings.redis_url or endpoints.redis_url,
                    "stripe_api_base": settings.stripe_api_base or endpoints.stripe_api_base,
                    "smtp_host": settings.smtp_host or endpoints.smtp_host,
                    "smtp_port": endpoints.smtp_port or settings.smtp_port,
                }
            )
            container = bootstrap(settings)
            running: Workers | None = None
            try:
                if demo:
                    for line in load_demo(container):
                        console.print(f"demo: {line}", markup=False, highlight=False)
                if embedded_stripe and settings.stripe_api_base:
                    webhook = f"http://{_reachable(host)}:{port}/api/v1/payments/stripe/webhook"
                    secret = webhook_secret_for(settings)
                    register_emulator_webhook(settings.stripe_api_base, webhook, secret)
                if embedded_kafka:  # it keeps topics in memory: feed it the whole log again
                    with suppress(ValueError):  # (unless the relay never ran)
                        rewind(container.store, 0)
                running = with_hash_chain(build_workers(container), container.store).start()
                if container.read_side is not None:
                    # Stopped by container.close(); read models of an older version are rebuilt.
                    container.read_side.start_runners(rebuild_stale=True)
                _announce(settings, endpoints_text(settings), host, port, demo)
                _serve(container, host, port)
            finally:
                if running is not None:
                    running.stop()
                container.close()
        finally:
            stack.stop()


def _reachable(host: str) -> str:
    """An address this machine can reach a server listening on `host` at."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def endpoints_text(settings: Settings) -> list[str]:
    return [
        f"postgres: {settings.database_url}",
        f"kafka:    {settings.kafka_bootstrap}",
        f"redis:    {settings.redis_url}",
        f"stripe:   {settings.stripe_api_base}",
        f"smtp:     {settings.smtp_host}:{settings.smtp_port}",
    ]


def _announce(settings: Settings, servers: list[str], host: str, port: int, demo: bool) -> None:
    base = f"http://{host}:{port}"
    lines = [
        f"TicketBlitz is up (data in {settings.data_dir.resolve()})",
        f"  command API: {base}/api/v1   docs: {base}/docs   health: {base}/health",
        *(f"  {s}" for s in servers),
    ]
    if demo:
        lines.append(f"  demo admin:    {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}")
        lines.append(f"  demo customer: {DEMO_CUSTOMER[0]} / {DEMO_CUSTOMER[1]}")
    if settings.admin_email:
        lines.append(f"  admin: {settings.admin_email} (password from TICKETBLITZ_ADMIN_PASSWORD)")
    console.print("\n".join(lines), markup=False, highlight=False)


class ApiChoice(StrEnum):
    all = "all"
    write = "write"
    read = "read"


@app.command()
def serve(
    port: Port = 8080,
    host: Host = "0.0.0.0",
    api: Annotated[ApiChoice, typer.Option(help="which API this process serves")] = ApiChoice.all,
) -> None:
    """Serve the APIs against external servers only (TICKETBLITZ_* URLs, as in compose.yaml).
    Read models are kept up to date by `ticketblitz projections run`, a process of its own."""
    with reported_errors():
        settings = Settings()
        if settings.database_url is None:
            raise CliError("TICKETBLITZ_DATABASE_URL is not set (use `ticketblitz up` to embed)")
        _check_port_free(host, port)
        container = bootstrap(settings)
        apis = APIS if api is ApiChoice.all else (api.value,)
        try:
            _serve(container, host, port, apis)
        finally:
            container.close()


@app.command()
def workers(
    heartbeat: Annotated[
        Path | None, typer.Option(help="touch this file every 5 s while every worker runs")
    ] = None,
) -> None:
    """Run the payment saga, hold expiry, Kafka relay and notifier until Ctrl-C or SIGTERM
    (servers from the TICKETBLITZ_* settings). Killed at any moment, they resume on restart."""
    with reported_errors():
        settings = Settings()
        if settings.database_url is None:
            raise CliError("TICKETBLITZ_DATABASE_URL is not set (use `ticketblitz up` to embed)")
        container = bootstrap(settings)
        try:
            running = with_recommender(
                with_hash_chain(build_workers(container), container.store), container
            ).start()
            signal.signal(signal.SIGTERM, lambda *_: running.request_stop())
            console.print(f"workers running: {', '.join(running.names)}")
            with suppress(KeyboardInterrupt):
                while not running.wait(timeout=5.0):
                    if heartbeat is not None and running.alive():
                        heartbeat.touch()
            running.stop()
        finally:
            container.close()


DataDir = Annotated[
    Path | None, typer.Option(help="the data dir of `ticketblitz up` (when no database URL is set)")
]


@contextmanager
def _database(data_dir: Path | None) -> Iterator[Settings]:
    """Settings with a database: TICKETBLITZ_DATABASE_URL, else the embedded PostgreSQL of the
    data dir (shared with a running `ticketblitz up`, or started for this command)."""
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    if settings.database_url is not None:
        yield settings
        return
    if not (settings.data_dir / "pg").is_dir():
        raise CliError(
            f"no database: set TICKETBLITZ_DATABASE_URL, or run `ticketblitz up` first "
            f"(no embedded data in {settings.data_dir.resolve()})"
        )
    stack = EmbeddedStack(
        settings.data_dir.resolve(), kafka=False, redis=False, stripe=False, smtp=False
    )
    endpoints = stack.start()
    try:
        yield settings.model_copy(update={"database_url": endpoints.database_url})
    finally:
        stack.stop()


@contextmanager
def _event_store(settings: Settings, pool_size: int = 2) -> Iterator[PostgresEventStore]:
    assert settings.database_url is not None
    store = PostgresEventStore(settings.database_url, pool_size=pool_size)
    try:
        yield store
    finally:
        store.close()


@projections_app.command("run")
def projections_run(
    data_dir: DataDir = None,
    rebuild_stale: Annotated[
        bool, typer.Option(help="rebuild read models built by another version of the code")
    ] = False,
) -> None:
    """Run the projection runners alone, until Ctrl-C or SIGTERM."""
    with (
        reported_errors(),
        _database(data_dir) as settings,
        _event_store(settings, pool_size=len(projection_kinds()) + 1) as store,
    ):
        runners = ProjectionRunners(
            store,
            page_size=settings.projection_page_size,
            poll_interval=settings.projection_poll_seconds,
            rebuild_stale=rebuild_stale,
        ).start()
        signal.signal(signal.SIGTERM, lambda *_: runners.request_stop())
        console.print(f"projections running: {', '.join(runners.names)}")
        with suppress(KeyboardInterrupt):
            runners.wait()
        runners.stop()


@projections_app.command("status")
def projections_status(data_dir: DataDir = None) -> None:
    """A table of the read models: generation, position and lag."""
    with reported_errors(), _database(data_dir) as settings, _event_store(settings) as store:
        with store.connection() as conn:
            ensure_read_side(conn, projection_kinds())
            head, statuses = projection_statuses(store, conn)
        Console().print(status_table(head, statuses))


@projections_app.command("failures")
def projections_failures(
    limit: Annotated[int, typer.Option(min=1, help="dead letters to list, newest first")] = 50,
    data_dir: DataDir = None,
) -> None:
    """Log followers (read models, workers) stopped on an event they cannot apply, and the
    events skipped as dead letters. Exits 1 while a follower is stopped on one."""
    with reported_errors(), _database(data_dir) as settings, _event_store(settings) as store:
        with store.connection() as conn:
            failing = follower_failures(conn)
            skipped = dead_letters(conn, limit=limit)
        now, dead = failures_tables(failing.values(), skipped)
        Console().print(now)
        Console().print(dead)
    if failing:
        raise typer.Exit(1)


@projections_app.command("rebuild")
def projections_rebuild(
    names: Annotated[list[str] | None, typer.Argument(help="read models to rebuild")] = None,
    all_: Annotated[bool, typer.Option("--all", help="rebuild every read model")] = False,
    data_dir: DataDir = None,
) -> None:
    """Replay the whole log into new tables while queries use the old ones, then switch over.
    Interrupted, it resumes where it stopped when run again."""
    with reported_errors(), _database(data_dir) as settings, _event_store(settings) as store:
        if bool(names) == all_:
            raise CliError("name the read models to rebuild, or use --all")
        try:
            report = rebuild_with_progress(
                console, store, None if all_ else names, settings.rebuild_page_size
            )
        except (UnknownProjectionError, RebuildBusyError) as error:
            raise CliError(str(error)) from None
        except KeyboardInterrupt:
            console.print("interrupted: run the same command again to resume")
            raise typer.Exit(130) from None
        typer.echo(report_line(report))


@relay_app.command()
def refeed(
    from_position: Annotated[
        int, typer.Option("--from", min=0, help="re-publish the events after this position")
    ] = 0,
    data_dir: DataDir = None,
) -> None:
    """Publish the integration events after a position again, e.g. to a broker that lost its
    data. Running workers pick it up at once; otherwise at their next start."""
    with reported_errors(), _database(data_dir) as settings, _event_store(settings) as store:
        try:
            previous = rewind(store, from_position)
        except ValueError as error:
            raise CliError(str(error)) from None
        console.print(f"kafka relay moved back from position {previous} to {from_position}")


@contextmanager
def _recommender(data_dir: Path | None) -> Iterator[tuple[Settings, PostgresEventStore]]:
    """Settings and the event store for `recommender` commands; Kafka errors are one line."""
    with _database(data_dir) as settings, _event_store(settings) as store:
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


def main() -> None:
    limit_malloc_arenas()  # before any thread: servers and followers live long
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("stripe", "kafka", "mail.log"):  # a line per request, message, partition
        logging.getLogger(chatty).setLevel(logging.WARNING)
    app(prog_name="ticketblitz")
    sys.exit(0)
