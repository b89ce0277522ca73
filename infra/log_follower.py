"""Following the event store's global log, exactly once, in pages.

Every follower (projection, process manager, relay, audit chain) has a name and a row in the
`follower_positions` table. A page of events is handled inside one transaction together with the
update of that row, so after a crash the page is either wholly applied or not at all. A
follower's effects outside PostgreSQL must be idempotent (keys, deduplication by event id).
Only one runner per follower name works at a time: it holds an advisory lock on the name.

An event a follower cannot handle never stops it silently (old logs and future bugs exist):
- A database that is unreachable or busy (connection lost, serialization failure, ...) is
  retried with a backoff, as before: the event is not to blame.
- Any other failure of a page is isolated: the page's events are applied one by one, so every
  event before the culprit is applied. The culprit is recorded in `follower_failures` (its
  position, the error, the attempts: shown by `GET /projections`, `/metrics` and
  `ticketblitz projections failures`) and logged as an error at every attempt, retried with a
  backoff, and then, by policy:
  * `DEAD_LETTER` (read models): after `dead_letter_after` attempts the event is copied to
    `follower_dead_letters` and skipped, in the transaction that moves the position past it,
    so everyone else keeps up. Only failures the event can cause are skipped (bad data, a
    constraint, an exception in the handler); a follower that cannot even run its SQL, or
    that failed on `max_consecutive_skips` events in a row, is itself broken and stays where
    it is (loudly) rather than skip the log.
  * `NEVER_SKIP` (the default: process managers, the audit chain, whose events carry money
    and proof): the follower stays on the event, retrying with a backoff, until the code or the
    data is fixed; the failure stays visible meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg_pool import PoolTimeout

from commands.ports import Connections, EventLog
from infra import tracing
from infra.decoding import read_traceparents
from infra.event_store import EVENTS_TABLE

log = logging.getLogger(__name__)

POSITIONS_DDL = """
CREATE TABLE IF NOT EXISTS follower_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    event_time timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""

FAILURES_DDL = (
    """
    CREATE TABLE IF NOT EXISTS follower_failures (
        name text PRIMARY KEY,
        position bigint NOT NULL,
        error text NOT NULL,
        attempts integer NOT NULL,
        skips boolean NOT NULL,
        first_failed_at timestamptz NOT NULL DEFAULT now(),
        last_failed_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS follower_dead_letters (
        name text NOT NULL,
        position bigint NOT NULL,
        originator_id uuid,
        originator_version integer,
        topic text,
        error text NOT NULL,
        attempts integer NOT NULL,
        skipped_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (name, position)
    )
    """,
)
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class FailurePolicy:
    """What a follower does about an event it cannot handle (see the module's docstring)."""

    dead_letter_after: int | None = None  # attempts before the event is skipped; None: never
    max_consecutive_skips: int = 10  # more events than this failing in a row: stop skipping
    max_backoff: float = 30.0  # seconds between attempts, at most


NEVER_SKIP = FailurePolicy()
DEAD_LETTER = FailurePolicy(dead_letter_after=5, max_backoff=2.0)


@dataclass(frozen=True)
class FollowerFailure:
    """A follower stopped on an event: where, why, how often it tried, whether it will skip."""

    name: str
    position: int
    error: str
    attempts: int
    skips: bool
    first_failed_at: datetime
    last_failed_at: datetime


@dataclass(frozen=True)
class DeadLetter:
    name: str
    position: int
    originator_id: Any
    originator_version: int | None
    topic: str | None
    error: str
    attempts: int
    skipped_at: datetime


def is_transient(error: BaseException) -> bool:
    """A failure of the database's availability, not of an event: retry, blame nobody."""
    if isinstance(error, PositionMovedError | OSError | PersistenceError | PoolTimeout):
        return True
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(error, psycopg.Error):
        return (error.sqlstate or "")[:2] in {"08", "40", "53", "57", "58"}
    return False


def blames_event(error: BaseException) -> bool:
    """Whether the event at hand can cause this failure (bad data, a constraint, a handler's
    exception); SQL that does not run at all (a missing table, ...) is the follower's fault."""
    if isinstance(error, psycopg.Error):
        return isinstance(error, psycopg.DataError | psycopg.IntegrityError)
    return True


def describe(error: BaseException) -> str:
    """One printable line about an error (it may quote the poison text: escaped here)."""
    text = f"{type(error).__name__}: {error}"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)[:MAX_ERROR_CHARS]


def ensure_failure_tables(conn: psycopg.Connection[Any]) -> None:
    for statement in FAILURES_DDL:
        conn.execute(statement)


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def follower_failures(conn: psycopg.Connection[Any]) -> dict[str, FollowerFailure]:
    """The followers that are stopped on an event now, by name."""
    if not _exists(conn, "follower_failures"):
        return {}
    rows = conn.execute(
        "SELECT name, position, error, attempts, skips, first_failed_at, last_failed_at "
        "FROM follower_failures ORDER BY name"
    ).fetchall()
    return {row[0]: FollowerFailure(*row) for row in rows}


def dead_letter_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    if not _exists(conn, "follower_dead_letters"):
        return {}
    rows = conn.execute("SELECT name, count(*) FROM follower_dead_letters GROUP BY name")
    return {name: int(count) for name, count in rows.fetchall()}


def dead_letters(
    conn: psycopg.Connection[Any], name: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """The events followers skipped, newest first."""
    if not _exists(conn, "follower_dead_letters"):
        return []
    rows = conn.execute(
        "SELECT name, position, originator_id, originator_version, topic, error, attempts, "
        "skipped_at FROM follower_dead_letters WHERE %s::text IS NULL OR name = %s "
        "ORDER BY skipped_at DESC, position DESC LIMIT %s",
        (name, name, limit),
    ).fetchall()
    return [DeadLetter(*row) for row in rows]


def record_dead_letter(
    conn: psycopg.Connection[Any], name: str, position: int, error: str, attempts: int
) -> None:
    """Inside the caller's transaction (the one that moves `name` past `position`)."""
    conn.execute(
        "INSERT INTO follower_dead_letters "
        "(name, position, originator_id, originator_version, topic, error, attempts) "
        f"SELECT %s, %s, e.originator_id, e.originator_version, e.topic, %s, %s "
        f"FROM (SELECT 1) one LEFT JOIN {EVENTS_TABLE} e ON e.notification_id = %s "
        "ON CONFLICT (name, position) DO NOTHING",
        (name, position, error, attempts, position),
    )


@dataclass(frozen=True)
class LoggedEvent:
    """A domain event with its place in the global log."""

    position: int
    event: Any  # an aggregate event of domain/ (typed by the handlers that match on it)
    traceparent: str | None = None  # the trace that made it (read only while tracing)

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


def read_page(store: EventLog, after: int, limit: int) -> list[LoggedEvent]:
    page = [LoggedEvent(position, event) for position, event in store.events_after(after, limit)]
    if page and tracing.tracing_on():  # one more query, for the trace contexts
        with store.connection() as conn:
            found = read_traceparents(conn, after, page[-1].position)
        if found:
            page = [replace(e, traceparent=found.get(e.position)) for e in page]
    return page


PageReader = Callable[[EventLog, int, int], list[LoggedEvent]]
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
        store: EventLog,
        handler: PageHandler,
        page_size: int = 1000,
        poll_interval: float = 0.05,
        reader: PageReader = read_page,
        failure_policy: FailurePolicy = NEVER_SKIP,
        after_page: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.handler = handler
        # Called once a page is committed (e.g. to wake the executor of the tasks it armed).
        self.after_page = after_page
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.reader = reader
        self.failure_policy = failure_policy
        self._ready = False
        self._failing_at: int | None = None  # the event recorded in follower_failures
        self._one_by_one = 0  # events still to apply alone after a page failed
        self._skipped_in_a_row = 0

    @property
    def name(self) -> str:
        return self.handler.name

    def setup(self) -> None:
        if self._ready:
            return
        with self.store.connection() as conn, conn.transaction():
            conn.execute(POSITIONS_DDL)
            ensure_failure_tables(conn)
            conn.execute(
                "INSERT INTO follower_positions (name) VALUES (%s) ON CONFLICT DO NOTHING",
                (self.name,),
            )
            self.handler.setup(conn)
            failing = conn.execute(
                "SELECT position FROM follower_failures WHERE name = %s", (self.name,)
            ).fetchone()
        if failing is not None:  # stopped on an event last time: approach it one by one
            self._failing_at = int(failing[0])
            self._one_by_one = self.page_size
        self._ready = True

    def position(self) -> int:
        self.setup()
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT position FROM follower_positions WHERE name = %s", (self.name,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def process_page(self, after: int, limit: int | None = None) -> int:
        """Handle the events after `after`; returns the new position (== after if none)."""
        page = self.reader(self.store, after, limit or self.page_size)
        if not page:
            return after
        # A page serves many traces: linked to each (nothing unless tracing).
        with tracing.linked_span(
            f"follow {self.name}",
            (e.traceparent for e in page),
            {"follower": self.name, "page.size": len(page)},
        ):
            return self._apply(after, page)

    def _apply(self, after: int, page: Sequence[LoggedEvent]) -> int:
        last = page[-1]
        with self.store.connection() as conn, conn.transaction():
            self._lock_position(conn, after)
            self.handler.handle(conn, page)
            conn.execute(
                "UPDATE follower_positions SET position = %s, event_time = %s, "
                "updated_at = now() WHERE name = %s",
                (last.position, last.timestamp, self.name),
            )
            recovered = self._failing_at is not None and last.position >= self._failing_at
            if recovered:
                conn.execute("DELETE FROM follower_failures WHERE name = %s", (self.name,))
        if recovered:
            log.warning(
                "follower %s applied the event at position %s that had failed: going on",
                self.name,
                self._failing_at,
            )
            self._failing_at = None
        if self.after_page is not None:
            self.after_page()
        return last.position

    def _lock_position(self, conn: psycopg.Connection[Any], after: int) -> None:
        """Lock this follower's row until the transaction ends; it must still be at `after`."""
        row = conn.execute(
            "SELECT position FROM follower_positions WHERE name = %s FOR UPDATE", (self.name,)
        ).fetchone()
        if row is None or int(row[0]) != after:
            raise PositionMovedError(f"{self.name} is at {row}, expected {after}")

    def _step(self, after: int) -> int:
        """One page; a single event while isolating the one that made a page fail."""
        alone = self._one_by_one > 0
        moved = self.process_page(after, 1 if alone else None)
        if moved != after:
            self._skipped_in_a_row = 0
            if alone:
                self._one_by_one -= 1
        return moved

    def _failed(self, after: int, error: Exception, stop: threading.Event) -> int:
        """Handle a page's failure (not the database's): isolate the event, record it, retry
        with a backoff or skip it by policy. Returns the position to go on from."""
        if self._one_by_one == 0:
            log.warning(
                "follower %s: a page after position %s failed (%s); applying its events one by one",
                self.name,
                after,
                describe(error),
            )
            self._one_by_one = self.page_size
            return after
        position = self._next_position(after)
        if position is None:
            return after  # nothing after it any more (cannot happen: it was just read)
        policy = self.failure_policy
        limit = policy.dead_letter_after
        skips = (
            limit is not None
            and blames_event(error)
            and self._skipped_in_a_row < policy.max_consecutive_skips
        )
        text = describe(error)
        attempts = self._record_failure(position, text, skips)
        self._failing_at = position
        if skips and limit is not None and attempts >= limit:
            self._dead_letter(after, position, text, attempts)
            log.error(
                "follower %s skipped the event at position %s after %s attempts; it is kept "
                "in follower_dead_letters (`ticketblitz projections failures`): %s",
                self.name,
                position,
                attempts,
                text,
            )
            self._skipped_in_a_row += 1
            self._failing_at = None
            return position
        if skips:
            then = f"of {limit}, then it is skipped"
        elif limit is not None and blames_event(error):
            then = f"{self._skipped_in_a_row} events skipped in a row: not skipping more"
        else:
            then = "it stays on this event until fixed"
        log.error(
            "follower %s cannot apply the event at position %s (attempt %s; %s): %s",
            self.name,
            position,
            attempts,
            then,
            text,
            exc_info=error if attempts == 1 else None,
        )
        stop.wait(min(self.poll_interval * 2 ** min(attempts - 1, 16), policy.max_backoff))
        return after

    def _next_position(self, after: int) -> int | None:
        with self.store.connection() as conn:
            row = conn.execute(
                f"SELECT min(notification_id) FROM {EVENTS_TABLE} WHERE notification_id > %s",
                (after,),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _record_failure(self, position: int, error: str, skips: bool) -> int:
        """Count an attempt on the event at `position`; returns the attempts so far."""
        with self.store.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO follower_failures AS f (name, position, error, attempts, skips) "
                "VALUES (%s, %s, %s, 1, %s) ON CONFLICT (name) DO UPDATE SET "
                "attempts = CASE WHEN f.position = excluded.position "
                "THEN f.attempts + 1 ELSE 1 END, "
                "first_failed_at = CASE WHEN f.position = excluded.position "
                "THEN f.first_failed_at ELSE now() END, "
                "position = excluded.position, error = excluded.error, "
                "skips = excluded.skips, last_failed_at = now() RETURNING attempts",
                (self.name, position, error, skips),
            ).fetchone()
        return 1 if row is None else int(row[0])

    def _dead_letter(self, after: int, position: int, error: str, attempts: int) -> None:
        """Skip the event at `position` (the next after `after`), keeping it as a dead letter."""
        with self.store.connection() as conn, conn.transaction():
            self._lock_position(conn, after)
            record_dead_letter(conn, self.name, position, error, attempts)
            conn.execute(
                "UPDATE follower_positions SET position = %s, updated_at = now() WHERE name = %s",
                (position, self.name),
            )
            conn.execute("DELETE FROM follower_failures WHERE name = %s", (self.name,))

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
                            try:
                                moved = self._step(position)
                            except Exception as error:
                                if is_transient(error):
                                    raise
                                position = self._failed(position, error, stop)
                                continue
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
    store: Connections, names: Sequence[str], position: int, timeout: float
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
