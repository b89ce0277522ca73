"""Rebuild read models blue/green: replay the whole log into a new generation while queries keep
using the active one, then switch atomically.

The log is read and decoded once per page for all the read models being rebuilt, and each page
is applied to all of them in one transaction together with their positions; so an interrupted
rebuild resumes where it stopped (the unfinished generation stays `building`). The switch
pauses the runners of the old generation (it locks their position rows), brings the new
generation at least as far as the old one inside the same transaction, then flips the views:
a reader never sees the read model go backwards.

A replay is deterministic, so an event a read model cannot apply (infra/log_follower.py) is not
retried: the page is applied again event by event, each in a savepoint, and the events that
fail are skipped into `follower_dead_letters` for that generation; a rebuild never stops on one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg

from commands.ports import EventLog
from infra.log_follower import (
    LoggedEvent,
    PositionMovedError,
    blames_event,
    describe,
    is_transient,
    record_dead_letter,
)
from projections.base import ACTIVE, EventReader, Projection
from projections.generations import (
    activate,
    advisory_key,
    drop_retired,
    ensure_read_side,
    start_building,
)
from projections.locks import try_advisory_lock
from projections.registry import projection_kinds

log = logging.getLogger(__name__)


class RebuildBusyError(Exception):
    def __init__(self, projection: str) -> None:
        super().__init__(f"a rebuild of {projection} is already running")
        self.projection = projection


@dataclass(frozen=True)
class RebuildProgress:
    replayed: int
    total: int
    elapsed: float


@dataclass(frozen=True)
class RebuildReport:
    generations: dict[str, int]  # read model -> its new, now active, generation
    resumed: bool
    replayed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.replayed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Member:
    projection: Projection
    position: int


def _apply_page(
    conn: psycopg.Connection[Any], members: Sequence[_Member], page: Sequence[LoggedEvent]
) -> int:
    """Inside the caller's transaction: apply a page to every read model that has not seen it
    yet and move their positions; returns the new position (callers update members after the
    commit)."""
    last = page[-1]
    behind = [m for m in members if m.position < last.position]
    names = [m.projection.name for m in behind]
    found = dict(
        conn.execute(
            "SELECT name, position FROM follower_positions WHERE name = ANY(%s) FOR UPDATE",
            (names,),
        ).fetchall()
    )
    for member in behind:
        if found.get(member.projection.name) != member.position:
            raise PositionMovedError(f"{member.projection.name} moved to {found}")
    for member in behind:
        events = (
            page
            if member.position < page[0].position
            else [e for e in page if e.position > member.position]
        )
        _apply_events(conn, member.projection, events)
    conn.execute(
        "UPDATE follower_positions SET position = %s, event_time = %s, updated_at = now() "
        "WHERE name = ANY(%s)",
        (last.position, last.timestamp, names),
    )
    return last.position


def _apply_events(
    conn: psycopg.Connection[Any], projection: Projection, events: Sequence[LoggedEvent]
) -> None:
    """Apply the events in a savepoint; if that fails because of an event, apply them one by
    one and skip (dead-letter) those that fail."""
    try:
        with conn.transaction():
            projection.handle(conn, events)
        return
    except Exception as error:
        if is_transient(error) or not blames_event(error) or len(events) == 0:
            raise
    for logged in events:
        try:
            with conn.transaction():
                projection.handle(conn, [logged])
        except Exception as error:
            if is_transient(error) or not blames_event(error):
                raise
            text = describe(error)
            log.error(
                "rebuilding %s: the event at position %s cannot be applied, skipped (kept in "
                "follower_dead_letters): %s",
                projection.name,
                logged.position,
                text,
            )
            record_dead_letter(conn, projection.name, logged.position, text, 1)


class Rebuild:
    def __init__(
        self,
        store: EventLog,
        names: Iterable[str] | None = None,
        page_size: int = 5000,
        on_progress: Callable[[RebuildProgress], None] | None = None,
    ) -> None:
        self.store = store
        self.kinds = projection_kinds(names)
        self.page_size = page_size
        self.on_progress = on_progress
        topics: set[str] = set()
        for kind in self.kinds:
            topics |= kind.topics()
        self.reader = EventReader(topics)

    def run(self) -> RebuildReport:
        with self.store.connection() as lock_conn, contextlib.ExitStack() as locks:
            for kind in self.kinds:
                key = advisory_key(f"rebuild:{kind.kind}")
                if not locks.enter_context(try_advisory_lock(lock_conn, key)):
                    raise RebuildBusyError(kind.kind)
            return self._rebuild()

    def _rebuild(self) -> RebuildReport:
        started = time.monotonic()
        members: list[_Member] = []
        resumed = False
        with self.store.connection() as conn:
            ensure_read_side(conn, self.kinds)
            for kind in self.kinds:
                drop_retired(conn, kind.kind)  # what an interrupted switch left behind
                projection, unfinished = start_building(conn, kind)
                resumed = resumed or unfinished
                row = conn.execute(
                    "SELECT position FROM follower_positions WHERE name = %s", (projection.name,)
                ).fetchone()
                members.append(_Member(projection, 0 if row is None else int(row[0])))
        start = min(m.position for m in members)
        self._catch_up(members, start, started)
        self._switch(members)
        with self.store.connection() as conn:
            for kind in self.kinds:
                drop_retired(conn, kind.kind)
        return RebuildReport(
            generations={m.projection.kind: m.projection.generation for m in members},
            resumed=resumed,
            replayed=min(m.position for m in members) - start,
            seconds=time.monotonic() - started,
        )

    def _next_page(self, members: Sequence[_Member]) -> list[LoggedEvent]:
        return self.reader(self.store, min(m.position for m in members), self.page_size)

    def _pages(self, after: int) -> Iterator[list[LoggedEvent]]:
        """The pages after `after`, each read and decoded on a thread of its own while the
        previous one is being applied (so decoding overlaps the database's work)."""
        with ThreadPoolExecutor(1, thread_name_prefix="rebuild-reader") as reader:
            ahead = reader.submit(self.reader, self.store, after, self.page_size)
            while page := ahead.result():
                ahead = reader.submit(self.reader, self.store, page[-1].position, self.page_size)
                yield page

    def _catch_up(self, members: list[_Member], start: int, started: float) -> None:
        head = self.store.head_position()
        for page in self._pages(start):
            with self.store.connection() as conn, conn.transaction():
                position = _apply_page(conn, members, page)
            for member in members:
                member.position = max(member.position, position)
            if self.on_progress is not None:
                head = max(head, position)
                self.on_progress(
                    RebuildProgress(position - start, head - start, time.monotonic() - started)
                )

    def _switch(self, members: list[_Member]) -> None:
        kinds = [m.projection.kind for m in members]
        with self.store.connection() as conn, conn.transaction():
            conn.execute(
                "SELECT 1 FROM read.generations WHERE projection = ANY(%s) FOR UPDATE", (kinds,)
            )
            # Pause the old generations' runners: their next page waits for these rows.
            rows = conn.execute(
                "SELECT f.position FROM read.generations g "
                "JOIN follower_positions f ON f.name = g.follower "
                "WHERE g.projection = ANY(%s) AND g.state = %s FOR UPDATE OF f",
                (kinds, ACTIVE),
            ).fetchall()
            target = max((int(r[0]) for r in rows), default=0)
            while min(m.position for m in members) < target:
                page = self._next_page(members)
                if not page:
                    break
                position = _apply_page(conn, members, page)
                for member in members:
                    member.position = max(member.position, position)
            for member in members:
                activate(conn, member.projection)
