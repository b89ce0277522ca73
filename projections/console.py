"""What `ticketblitz projections ...` shows on a terminal: the status table and the rebuild's
progress bar."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from commands.ports import EventLog
from infra.log_follower import DeadLetter, FollowerFailure
from projections.positions import ProjectionStatus
from projections.rebuild import Rebuild, RebuildProgress, RebuildReport


def status_table(head: int, statuses: Iterable[ProjectionStatus]) -> Table:
    table = Table(title=f"read models (event store head: {head:,})")
    for column in ("projection", "generation", "position", "lag (events)", "lag (s)", "rebuild"):
        table.add_column(column, justify="left" if column == "projection" else "right")
    for s in statuses:
        rebuild = "-"
        if s.rebuilding_generation is not None:
            rebuild = f"g{s.rebuilding_generation} at {s.rebuilding_position or 0:,}"
        elif s.stale:
            rebuild = "needed (stale)"
        table.add_row(
            s.projection,
            f"g{s.generation}",
            f"{s.position:,}",
            f"{s.lag_events:,}",
            f"{s.lag_seconds:.3f}",
            rebuild,
        )
    return table


def failures_tables(
    failures: Iterable[FollowerFailure], skipped: Iterable[DeadLetter]
) -> tuple[Table, Table]:
    """The followers stopped on an event now, and the events they skipped (dead letters)."""
    now = Table(title="log followers stopped on an event (they retry)")
    for column in ("follower", "position", "attempts", "then", "since", "error"):
        now.add_column(column, justify="right" if column in ("position", "attempts") else "left")
    for f in failures:
        now.add_row(
            f.name,
            f"{f.position:,}",
            str(f.attempts),
            "skipped" if f.skips else "stays until fixed",
            f"{f.first_failed_at:%Y-%m-%d %H:%M:%S}",
            f.error,
        )
    dead = Table(title="events skipped (follower_dead_letters, newest first)")
    for column in ("follower", "position", "event", "attempts", "skipped at", "error"):
        dead.add_column(column, justify="right" if column in ("position", "attempts") else "left")
    for d in skipped:
        event = "-" if d.topic is None else f"{d.topic} {d.originator_id} v{d.originator_version}"
        dead.add_row(
            d.name,
            f"{d.position:,}",
            event,
            str(d.attempts),
            f"{d.skipped_at:%Y-%m-%d %H:%M:%S}",
            d.error,
        )
    return now, dead


def rebuild_with_progress(
    console: Console, store: EventLog, names: list[str] | None, page_size: int
) -> RebuildReport:
    """Run a rebuild, drawing a progress bar with events/s and an ETA."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TextColumn("{task.fields[rate]:,.0f} events/s"),
        TimeRemainingColumn(),
    )
    rebuild = Rebuild(store, names, page_size=page_size)  # unknown names fail here, not mid-bar
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("replaying", total=None, rate=0.0)

        def show(p: RebuildProgress) -> None:
            rate = p.replayed / p.elapsed if p.elapsed > 0 else 0.0
            progress.update(task, completed=p.replayed, total=max(p.total, p.replayed), rate=rate)

        rebuild.on_progress = show
        return rebuild.run()


def report_line(report: RebuildReport) -> str:
    generations = ", ".join(f"{name} g{g}" for name, g in report.generations.items())
    resumed = " (resumed)" if report.resumed else ""
    return (
        f"rebuilt {generations}{resumed}: {report.replayed:,} events replayed in "
        f"{report.seconds:.2f}s ({report.rate:,.0f} events/s)"
    )
