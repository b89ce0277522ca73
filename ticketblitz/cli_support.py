"""What every `ticketblitz` sub-command shares: one-line errors, the data dir option, and the
database and event store of TICKETBLITZ_DATABASE_URL or of the data dir."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from rich.console import Console

from commands.errors import StoreUnavailableError
from infra.event_store import PostgresEventStore
from infra.settings import Settings
from ticketblitz.bootstrap import ConfigurationError
from ticketblitz.embedded import EmbeddedStack
from ticketblitz.running_stack import RECORDED, running_endpoints

console = Console(stderr=True)


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


DataDir = Annotated[
    Path | None, typer.Option(help="the data dir of `ticketblitz up` (when no database URL is set)")
]


@contextmanager
def database(data_dir: Path | None) -> Iterator[Settings]:
    """Settings with a database: TICKETBLITZ_DATABASE_URL, else the embedded PostgreSQL of the
    data dir (shared with a running `ticketblitz up`, or started for this command)."""
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    running = running_endpoints(settings.data_dir.resolve())
    if running is not None:  # the servers of the `ticketblitz up` running there, unless set
        settings = settings.model_copy(
            update={
                name: running[name]
                for name in RECORDED
                if getattr(settings, name) is None and running.get(name) is not None
            }
            | ({"smtp_port": running["smtp_port"]} if settings.smtp_host is None else {})
        )
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
def event_store(settings: Settings, pool_size: int = 2) -> Iterator[PostgresEventStore]:
    assert settings.database_url is not None
    store = PostgresEventStore(settings.database_url, pool_size=pool_size)
    try:
        yield store
    finally:
        store.close()
