"""`ticketblitz`: the single entry point for every operation."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from commands.errors import StoreUnavailableError
from infra.bootstrap import ConfigurationError, Container, bootstrap
from infra.demo import DEMO_ADMIN, DEMO_CUSTOMER, load_demo
from infra.embedded import EmbeddedStack
from infra.settings import Settings
from infra.web import create_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(stderr=True)

Port = Annotated[int, typer.Option(min=1, max=65535, help="HTTP port for the APIs")]
Host = Annotated[str, typer.Option(help="interface to listen on")]


class CliError(Exception):
    """Reported as one line on stderr with exit status 2."""


@contextmanager
def reported_errors() -> Iterator[None]:
    try:
        yield
    except (CliError, ConfigurationError, StoreUnavailableError, RuntimeError, OSError) as error:
        console.print(f"ticketblitz: error: {error}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        console.print(f"ticketblitz: error: invalid setting {where}: {first['msg']}")
        raise typer.Exit(2) from None


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise CliError(f"port {port} on {host} is already in use (try --port)") from None


def _serve(container: Container, host: str, port: int) -> None:
    uvicorn.run(create_app(container), host=host, port=port, log_level="info")


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
            try:
                if demo:
                    for line in load_demo(container):
                        console.print(f"demo: {line}", markup=False, highlight=False)
                _announce(settings, endpoints_text(settings), host, port, demo)
                _serve(container, host, port)
            finally:
                container.close()
        finally:
            stack.stop()


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


@app.command()
def serve(port: Port = 8080, host: Host = "0.0.0.0") -> None:
    """Serve the APIs against external servers only (TICKETBLITZ_* URLs, as in compose.yaml)."""
    with reported_errors():
        settings = Settings()
        if settings.database_url is None:
            raise CliError("TICKETBLITZ_DATABASE_URL is not set (use `ticketblitz up` to embed)")
        _check_port_free(host, port)
        container = bootstrap(settings)
        try:
            _serve(container, host, port)
        finally:
            container.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="ticketblitz")
    sys.exit(0)
