"""`ticketblitz audit ...`: replay a stream, verify the whole log, seal it, export it.

Exit status: 0 fine, 1 the log breaks a rule or its hash chain, 2 the command could not run
(one line on stderr).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, NoReturn
from uuid import UUID

import psycopg
import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from audit.export import FORMATS, exported, write_export
from audit.hash_chain import ChainBrokenError, Root, seal
from audit.invariants import DEFAULT_REFUND_GRACE
from audit.replay import Replay, ReplayError, StreamNotFoundError, replay_stream
from audit.revenue import SalesReadModel
from audit.verify import Progress, VerifyReport, verify
from domain.ids import (
    door_list_id_for,
    inventory_id_for,
    presale_codes_id_for,
    waiting_list_id_for,
)
from infra.event_store import PostgresEventStore
from ticketblitz.cli_support import CliError, DataDir, database, event_store, reported_errors

audit_app = typer.Typer(
    no_args_is_help=True, help="Audits from the event log: replay, verify, seal, export."
)
stderr = Console(stderr=True)


@contextmanager
def _store(data_dir: Path | None) -> Iterator[PostgresEventStore]:
    """The event store of TICKETBLITZ_DATABASE_URL or of the data dir; errors as one line."""
    with reported_errors():
        try:
            with database(data_dir) as settings, event_store(settings) as store:
                yield store
        except (StreamNotFoundError, ReplayError, ChainBrokenError, ValueError) as error:
            raise CliError(str(error)) from None
        except (PersistenceError, psycopg.Error) as error:
            raise CliError(f"the event store: {error}") from None


# A show's other streams, by the show's id: its seats and holds, its tickets, its waiting list,
# its presale codes.
SHOW_PARTS: dict[str, Callable[[UUID], UUID]] = {
    "inventory": inventory_id_for,
    "door-list": door_list_id_for,
    "waiting-list": waiting_list_id_for,
    "presale-codes": presale_codes_id_for,
}


def _fail(message: str) -> NoReturn:
    raise CliError(message)


@audit_app.command()
def replay(
    stream_id: Annotated[str, typer.Argument(help="the aggregate's id (show, booking, ...)")],
    as_of: Annotated[
        str | None, typer.Option(help="a time with its zone, e.g. 2026-05-01T20:00:00Z")
    ] = None,
    version: Annotated[int | None, typer.Option(min=0, help="stop at this version")] = None,
    part: Annotated[
        str | None,
        typer.Option(
            help=f"with a show's id: replay one of its other streams ({', '.join(SHOW_PARTS)})"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
    data_dir: DataDir = None,
) -> None:
    """A stream's events (position, version, time, type, payload) and the aggregate's state
    rebuilt from them, at a time or a version (default: now). A show's holds, sales and
    tickets live in streams of their own: a show's replay lists them, `--part` replays one."""
    with _store(data_dir) as store:
        if as_of is not None and version is not None:
            _fail("give --as-of or --version, not both")
        try:
            stream = UUID(stream_id)
        except ValueError:
            _fail(f"not a stream id (a UUID): {stream_id!r}")
        if part is not None:
            if part not in SHOW_PARTS:
                _fail(f"--part is one of {', '.join(SHOW_PARTS)}, not {part!r}")
            stream = SHOW_PARTS[part](stream)
        at = _parse_time(as_of) if as_of is not None else None
        result = replay_stream(store, stream, as_of=at, version=version)
        related = (
            {
                name: str(id_for(stream))
                for name, id_for in SHOW_PARTS.items()
                if store.exists(id_for(stream))
            }
            if result.aggregate == "Show"
            else {}
        )
        if as_json:
            document = {**result.as_json(), **({"related_streams": related} if related else {})}
            typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            _print_replay(result, as_of, version)
            for name, related_id in related.items():
                typer.echo(
                    f"the show's {name}: stream {related_id} "
                    f"(`ticketblitz audit replay {stream} --part {name}`)"
                )


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--as-of is not an ISO 8601 time: {text!r}")
    if parsed.tzinfo is None:
        _fail(f"--as-of needs a time zone (e.g. {text}Z or {text}+02:00)")
    return parsed


def _print_replay(result: Replay, as_of: str | None, version: int | None) -> None:
    out = Console(soft_wrap=True)
    table = Table(title=f"{result.aggregate} {result.stream_id}")
    for column in ("position", "version", "time", "type", "payload"):
        table.add_column(column, overflow="fold")
    for e in result.events:
        table.add_row(
            str(e.position),
            str(e.version),
            e.time.isoformat(),
            e.type,
            json.dumps(e.payload, ensure_ascii=False),
        )
    out.print(table)
    point = f"as of {as_of}" if as_of else f"at version {version}" if version is not None else ""
    if result.state is None:
        out.print(f"the stream did not exist yet {point}".strip(), highlight=False)
        return
    later = f" ({result.later} later events not applied)" if result.later else ""
    out.print(f"state at version {result.version} {point}{later}:".replace("  ", " "))
    out.print_json(json.dumps(result.state, ensure_ascii=False))


@audit_app.command("verify")
def verify_command(
    root: Annotated[
        str | None,
        typer.Option(help="HASH@POSITION from `audit seal`: prove the log up to there unchanged"),
    ] = None,
    page_size: Annotated[int, typer.Option(min=100, max=100_000)] = 10_000,
    refund_grace_minutes: Annotated[
        float,
        typer.Option(
            min=0,
            help="a refund due for less than this long may be in flight: pending, not a violation",
        ),
    ] = DEFAULT_REFUND_GRACE.total_seconds() / 60,
    data_dir: DataDir = None,
) -> None:
    """Replay the whole log, rebuilding every aggregate, and check every rule at every point,
    the hash chain, and (with --root) that the log up to the root is unchanged; then the
    refunds due at its end (pending while younger than the grace)."""
    with _store(data_dir) as store:
        anchor = Root.parse(root) if root is not None else None
        try:
            with _progress() as advance:
                report = verify(
                    store,
                    root=anchor,
                    revenue=SalesReadModel(),
                    page_size=page_size,
                    progress=advance,
                    refund_grace=timedelta(minutes=refund_grace_minutes),
                )
        except KeyboardInterrupt:
            stderr.print("interrupted: nothing was verified")
            raise typer.Exit(130) from None
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@contextmanager
def _progress() -> Iterator[Progress]:
    """A progress bar on stderr (drawn on terminals only): position, events/s, elapsed."""
    started = time.perf_counter()
    columns = (
        TextColumn("verifying"),
        BarColumn(),
        TextColumn("{task.fields[where]}"),
        TimeElapsedColumn(),
    )
    with RichProgress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task("verify", total=None, where="")

        def advance(position: int, head: int, events: int) -> None:
            rate = events / max(time.perf_counter() - started, 1e-9)
            where = f"position {position:,}/{head:,}  {rate:,.0f} events/s"
            bar.update(task, completed=position, total=head, where=where)

        yield advance


def _print_report(report: VerifyReport) -> None:
    lines = [
        f"verified {report.events:,} events of {report.streams:,} streams up to position "
        f"{report.head:,} in {report.seconds:.2f} s ({report.rate:,.0f} events/s)"
    ]
    if report.chain_head is None:
        lines.append("hash chain: none yet (`ticketblitz audit seal` starts it)")
    else:
        unchained = (
            f", {report.unchained:,} later records not chained yet" if report.unchained else ""
        )
        lines.append(f"hash chain: checked, head at position {report.chain_head:,}{unchained}")
    if report.root is not None:
        proved = not any(v.rule == "root-mismatch" for v in report.violations)
        lines.append(f"root {report.root}: {'proved' if proved else 'NOT proved'}")
    if report.revenue is None:
        lines.append(f"revenue per show: not compared ({report.revenue_note})")
    else:
        lines.append(
            f"revenue per show: compared with {report.revenue.source} at position "
            f"{report.revenue.position:,} ({len(report.revenue.shows):,} shows)"
        )
    lines.append(f"payment mismatches recorded: {report.mismatches:,}")
    grace = report.refund_grace.total_seconds() / 60
    lines.append(f"refunds pending (due for less than {grace:g} min): {report.pending_count:,}")
    lines.extend(f"  {p}" for p in report.pending)
    if report.pending_count > len(report.pending):
        lines.append(f"  ... and {report.pending_count - len(report.pending):,} more")
    lines.append(f"violations: {report.violation_count:,}")
    lines.extend(f"  {v}" for v in report.violations)
    hidden = report.violation_count - len(report.violations)
    if hidden:
        lines.append(f"  ... and {hidden:,} more")
    typer.echo("\n".join(lines))


@audit_app.command("seal")
def seal_command(data_dir: DataDir = None) -> None:
    """Bring the hash chain to the head of the log and print its root, HASH@POSITION: keep it
    outside the database; `audit verify --root` proves the log up to there unchanged."""
    with _store(data_dir) as store:
        root = seal(store)
        typer.echo(str(root))
        stderr.print(
            "keep this root outside the database; `ticketblitz audit verify --root "
            f"{root}` proves the log up to position {root.position} unchanged",
            highlight=False,
            soft_wrap=True,
        )


@audit_app.command("export")
def export_command(
    first: Annotated[int, typer.Option("--from", min=1, help="first position")] = 1,
    last: Annotated[int | None, typer.Option("--to", min=1, help="last position")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    data_dir: DataDir = None,
) -> None:
    """Stream the events from --from to --to (inclusive) to stdout, for external tools."""
    with _store(data_dir) as store:
        if fmt not in FORMATS:
            _fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if last is not None and last < first:
            _fail(f"--to {last} is before --from {first}")
        write_export(exported(store, first, last), sys.stdout, fmt)
