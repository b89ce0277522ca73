"""`ticketblitz projections ...`: run, inspect and rebuild the read models (projections/)."""

from __future__ import annotations

import signal
from contextlib import suppress
from typing import Annotated

import typer
from rich.console import Console

from infra.log_follower import dead_letters, follower_failures
from projections.console import failures_tables, rebuild_with_progress, report_line, status_table
from projections.generations import ensure_read_side
from projections.positions import projection_statuses
from projections.rebuild import RebuildBusyError
from projections.registry import UnknownProjectionError, projection_kinds
from projections.runner import ProjectionRunners
from ticketblitz.cli_support import (
    CliError,
    DataDir,
    console,
    database,
    event_store,
    reported_errors,
)
from ticketblitz.ops_server import projections_ops_server

projections_app = typer.Typer(no_args_is_help=True, help="The read models (projections/).")


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
        database(data_dir) as settings,
        event_store(settings, pool_size=len(projection_kinds()) + 1) as store,
    ):
        runners = ProjectionRunners(
            store,
            page_size=settings.projection_page_size,
            poll_interval=settings.projection_poll_seconds,
            rebuild_stale=rebuild_stale,
        ).start()
        ops = projections_ops_server(settings, store, runners.alive)  # TICKETBLITZ_OPS_PORT
        signal.signal(signal.SIGTERM, lambda *_: runners.request_stop())
        console.print(f"projections running: {', '.join(runners.names)}")
        with suppress(KeyboardInterrupt):
            runners.wait()
        runners.stop()
        if ops is not None:
            ops.stop()


@projections_app.command("status")
def projections_status(data_dir: DataDir = None) -> None:
    """A table of the read models: generation, position and lag."""
    with reported_errors(), database(data_dir) as settings, event_store(settings) as store:
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
    with reported_errors(), database(data_dir) as settings, event_store(settings) as store:
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
    with reported_errors(), database(data_dir) as settings, event_store(settings) as store:
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
