"""Following the event store's global log, exactly once, in pages.

Every follower (projection, process manager, relay, audit chain) has a name and a row in the
`follower_positions` table. A page of events is handled inside one transaction together with the
update of that row, so after a crash the page is either wholly applied or not at all. A
follower's effects outside PostgreSQL must be idempotent (keys, deduplication by event id).
Only one runner per follower name works at a time: it holds an advisory lock on the name.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
from eventsourcing.persistence import PersistenceError

from infra.event_store import PostgresEventStore

log = logging.getLogger(__name__)

POSITIONS_DDL = """
CREATE TABLE IF NOT EXISTS follower_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    event_time timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class LoggedEvent:
    """A domain event with its place in the global log."""

    position: int
    event: Any  # an aggregate event of domain/ (typed by the handlers that match on it)

    @property
    def type_name(self) -> str:
        return type(self.event).__qualname__

    @property
    def timestamp(self) -> datetime:
        stamp: datetime = self.event.timestamp
        return stamp


class PageHandler(Protocol):
    """What a follower does with a page of events, inside the page's transaction."""

    name: str

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        """Create the follower's tables if missing (idempotent)."""
        ...

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None: ...


RECHECK_SECONDS = 1.0  # how often an idle follower re-reads its recorded position


class PositionMovedError(Exception):
    """Another runner advanced this follower meanwhile; the page was rolled back."""


def read_page(store: PostgresEventStore, after: int, limit: int) -> list[LoggedEvent]:
    notifications = store.app.recorder.select_notifications(
        start=after, limit=limit, inclusive_of_start=False
    )
    to_event = store.app.mapper.to_domain_event
    return [LoggedEvent(n.id, to_event(n)) for n in notifications]


PageReader = Callable[[PostgresEventStore, int, int], list[LoggedEvent]]
"""Reads up to `limit` events after a position (a follower may filter or decode lazily)."""


def positions_of(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, datetime | None]]:
    rows = conn.execute("SELECT name, position, event_time FROM follower_positions").fetchall()
    return {name: (int(position), event_time) for name, position, event_time in rows}


def _lock_key(name: str) -> int:
    digest = hashlib.blake2b(b"follower:" + name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LogFollower:
    def __init__(
        self,
        store: PostgresEventStore,
        handler: PageHandler,
        page_size: int = 1000,
        poll_interval: float = 0.05,
        reader: PageReader = read_page,
    ) -> None:
        self.store = store
        self.handler = handler
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.reader = reader
        self._ready = False

    @property
    def name(self) -> str:
        return self.handler.name

    def setup(self) -> None:
        if self._ready:
            return
        with self.store.connection() as conn, conn.transaction():
            conn.execute(POSITIONS_DDL)
            conn.execute(
                "INSERT INTO follower_positions (name) VALUES (%s) ON CONFLICT DO NOTHING",
                (self.name,),
            )
            self.handler.setup(conn)
        self._ready = True

    def position(self) -> int:
        self.setup()
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT position FROM follower_positions WHERE name = %s", (self.name,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def process_page(self, after: int) -> int:
        """Handle the events after `after`; returns the new position (== after if none)."""
        page = self.reader(self.store, after, self.page_size)
        if not page:
            return after
        last = page[-1]
        with self.store.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT position FROM follower_positions WHERE name = %s FOR UPDATE",
                (self.name,),
            ).fetchone()
            if row is None or int(row[0]) != after:
                raise PositionMovedError(f"{self.name} is at {row}, expected {after}")
            self.handler.handle(conn, page)
            conn.execute(
                "UPDATE follower_positions SET position = %s, event_time = %s, "
                "updated_at = now() WHERE name = %s",
                (last.position, last.timestamp, self.name),
            )
        return last.position

    def catch_up(self, until: int | None = None) -> int:
        """Process pages until the head (or `until`) is reached; returns the position."""
        self.setup()
        position = self.position()
        while until is None or position < until:
            moved = self.process_page(position)
            if moved == position:
                break
            position = moved
        return position

    def run(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Follow the log until `stop` is set; survives database outages by retrying.

        `wake`, if given, is set by whoever learns of new events (e.g. a LISTEN on the store's
        NOTIFY channel): an idle follower then reacts at once instead of at its next poll.
        Whoever sets `stop` should set `wake` too."""
        backoff = self.poll_interval
        while not stop.is_set():
            try:
                with self.store.connection() as lock_conn:
                    key = _lock_key(self.name)
                    locked = lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                    if not (locked and locked[0]):
                        stop.wait(1.0)  # another runner has it: stand by
                        continue
                    try:
                        self.setup()
                        position = self.position()
                        checked = time.monotonic()
                        while not stop.is_set():
                            moved = self.process_page(position)
                            if moved == position:
                                self._idle(stop, wake)
                                if time.monotonic() - checked >= RECHECK_SECONDS:
                                    # Moved back meanwhile (`relay refeed`)? A page would
                                    # tell, but an idle log has none.
                                    moved, checked = self.position(), time.monotonic()
                            position = moved
                            backoff = self.poll_interval
                    finally:
                        # The connection goes back to the pool: it must not keep the lock.
                        with contextlib.suppress(psycopg.Error):
                            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except (psycopg.Error, PersistenceError, PositionMovedError, OSError) as error:
                # PersistenceError: the event store library's wrapper of a database error
                # (reading the log), raised after the library's own retries.
                log.warning("follower %s: %s; retrying in %.1fs", self.name, error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _idle(self, stop: threading.Event, wake: threading.Event | None) -> None:
        if wake is None:
            stop.wait(self.poll_interval)
        else:
            wake.wait(self.poll_interval)
            wake.clear()  # cleared before the next read: a later NOTIFY is not lost


def wait_for_position(
    store: PostgresEventStore, names: Sequence[str], position: int, timeout: float
) -> bool:
    """Read-your-writes: wait (bounded) until every named follower has passed `position`."""
    deadline = time.monotonic() + timeout
    while True:
        with store.connection() as conn:
            current = positions_of(conn)
        if all(current.get(n, (0, None))[0] >= position for n in names):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
