"""`ticketblitz`: the single entry point for every operation."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
from contextlib import suppress
from enum import StrEnum
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from http_shell.container import Container
from infra.logs import configure_logging
from infra.malloc_arenas import limit_malloc_arenas
from infra.payments import register_emulator_webhook, webhook_secret_for
from infra.settings import Settings
from infra.tracing import configure_tracing, stop_tracing
from process_managers.kafka_relay import rewind
from ticketblitz.audit_cli import audit_app
from ticketblitz.audit_worker import with_hash_chain
from ticketblitz.bench_cli import BENCH_CONTEXT, bench
from ticketblitz.bootstrap import bootstrap
from ticketblitz.cli_support import (
    CliError,
    DataDir,
    console,
    database,
    event_store,
    reported_errors,
)
from ticketblitz.demo import DEMO_ADMIN, DEMO_CUSTOMER, load_demo
from ticketblitz.embedded import EmbeddedStack
from ticketblitz.http_server import KEEP_ALIVE_SECONDS
from ticketblitz.mail_cli import mail_app
from ticketblitz.ops_server import workers_ops_server
from ticketblitz.projections_cli import projections_app
from ticketblitz.recommender_cli import recommender_app
from ticketblitz.recommender_worker import with_recommender
from ticketblitz.running_stack import RECORDED, data_dir_lock, record_endpoints
from ticketblitz.served import serve_workers
from ticketblitz.tickets_cli import tickets_app
from ticketblitz.web import APIS, create_app
from ticketblitz.workers import Workers, build_workers

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
relay_app = typer.Typer(no_args_is_help=True, help="The relay of integration events to Kafka.")
app.add_typer(relay_app, name="relay")
app.add_typer(projections_app, name="projections")
app.add_typer(audit_app, name="audit")
app.add_typer(recommender_app, name="recommender")
app.add_typer(tickets_app, name="tickets")
app.add_typer(mail_app, name="mail")
app.command(context_settings=BENCH_CONTEXT)(bench)


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"ticketblitz {package_version('ticketblitz')}")  # stdout: for scripts
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """(The options every command shares.)"""


Port = Annotated[int, typer.Option(min=1, max=65535, help="HTTP port for the APIs")]
Host = Annotated[str, typer.Option(help="interface to listen on")]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise CliError(f"port {port} on {host} is already in use (try --port)") from None


ApiProcesses = Annotated[
    int,
    typer.Option(
        min=1,
        max=64,
        help="API processes sharing the port (each stateless; docs/SCALING.md)",
    ),
]


def _serve(container: Container, host: str, port: int, apis: tuple[str, ...] = APIS) -> None:
    uvicorn.run(
        create_app(container, apis),
        host=host,
        port=port,
        log_level="info",
        log_config=None,  # uvicorn's lines go through our handler (infra/logs.py)
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        proxy_headers=False,  # it believes loopback's X-Forwarded-For: see client_address
    )


def _serve_workers(
    workers: int, host: str, port: int, apis: tuple[str, ...], env: dict[str, str]
) -> None:
    """`workers` API processes on one port, each listening on a socket of its own
    (SO_REUSEPORT: the kernel spreads connections over them), supervised by uvicorn, which
    restarts any that dies (ticketblitz/served.py). Each builds its own container from the
    TICKETBLITZ_* settings (`env` added to this process's environment first)."""
    os.environ.update(env)
    serve_workers(workers, host, port, apis)


@app.command()
def up(
    port: Port = 8080,
    host: Host = "127.0.0.1",
    demo: Annotated[bool, typer.Option(help="load demo shows and accounts")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="where embedded data lives")] = None,
    workers: ApiProcesses = 1,
) -> None:
    """Start the embedded stack for every server not configured, then serve the APIs."""
    with reported_errors():
        overrides: dict[str, object] = {"demo": demo}
        if data_dir is not None:
            overrides["data_dir"] = data_dir
        settings = Settings(**overrides)  # type: ignore[arg-type]
        _check_port_free(host, port)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with data_dir_lock(settings.data_dir.resolve()):
            _up(settings, host, port, demo, workers)


def _up(settings: Settings, host: str, port: int, demo: bool, workers: int = 1) -> None:
    """`up` with the data directory held."""
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
            record_endpoints(
                settings.data_dir.resolve(),
                {
                    "pid": os.getpid(),
                    "api": f"http://{_reachable(host)}:{port}",
                    **{name: getattr(settings, name) for name in RECORDED},
                    "smtp_port": settings.smtp_port,
                },
            )
            _announce(settings, endpoints_text(settings), host, port, demo)
            if workers > 1:  # the API in processes of their own; followers stay in this one
                _serve_workers(workers, host, port, APIS, _served_env(settings))
            else:
                _serve(container, host, port)
        finally:
            if running is not None:
                running.stop()
            container.close()
    finally:
        stack.stop()


def _served_env(settings: Settings) -> dict[str, str]:
    """The settings `up` found or started, for API processes of their own."""
    found = {
        "data_dir": settings.data_dir.resolve(),
        "database_url": settings.database_url,
        "kafka_bootstrap": settings.kafka_bootstrap,
        "redis_url": settings.redis_url,
        "stripe_api_base": settings.stripe_api_base,
        "smtp_host": settings.smtp_host,
        "smtp_port": settings.smtp_port,
    }
    return {f"TICKETBLITZ_{k.upper()}": str(v) for k, v in found.items() if v is not None}


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
    workers: ApiProcesses = 1,
) -> None:
    """Serve the APIs against external servers only (TICKETBLITZ_* URLs, as in compose.yaml).
    Read models are kept up to date by `ticketblitz projections run`, a process of its own."""
    with reported_errors():
        settings = Settings()
        if settings.database_url is None:
            raise CliError("TICKETBLITZ_DATABASE_URL is not set (use `ticketblitz up` to embed)")
        _check_port_free(host, port)
        apis = APIS if api is ApiChoice.all else (api.value,)
        if workers > 1:
            _serve_workers(workers, host, port, apis, {})
            return
        container = bootstrap(settings)
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
            ops = workers_ops_server(settings, container.store, running.alive)  # _OPS_PORT
            signal.signal(signal.SIGTERM, lambda *_: running.request_stop())
            console.print(f"workers running: {', '.join(running.names)}")
            with suppress(KeyboardInterrupt):
                while not running.wait(timeout=5.0):
                    if heartbeat is not None and running.alive():
                        heartbeat.touch()
            running.stop()
            if ops is not None:
                ops.stop()
        finally:
            container.close()


@relay_app.command()
def refeed(
    from_position: Annotated[
        int, typer.Option("--from", min=0, help="re-publish the events after this position")
    ] = 0,
    data_dir: DataDir = None,
) -> None:
    """Publish the integration events after a position again, e.g. to a broker that lost its
    data. Running workers pick it up at once; otherwise at their next start."""
    with reported_errors(), database(data_dir) as settings, event_store(settings) as store:
        try:
            previous = rewind(store, from_position)
        except ValueError as error:
            raise CliError(str(error)) from None
        console.print(f"kafka relay moved back from position {previous} to {from_position}")


def main() -> None:
    limit_malloc_arenas()  # before any thread: servers and followers live long
    configure_logging()  # JSON lines unless on a terminal (TICKETBLITZ_LOG_FORMAT, _LOG_LEVEL)
    if configure_tracing(f"ticketblitz-{sys.argv[1] if len(sys.argv) > 1 else 'cli'}"):
        atexit.register(stop_tracing)  # OTEL_EXPORTER_OTLP_ENDPOINT: flush the last spans
    app(prog_name="ticketblitz")
    sys.exit(0)
