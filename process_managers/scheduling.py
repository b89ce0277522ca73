"""Helpers shared by the process managers' task tables and their executors."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from psycopg import sql

from commands.bookings import BookingCommands
from commands.errors import (
    ConcurrencyError,
    PaymentGatewayUnavailableError,
    StoreUnavailableError,
)
from commands.ports import Connections
from infra.log_follower import PageHandler

# Failures that heal by themselves: a retry later is the whole remedy.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    PaymentGatewayUnavailableError,
    StoreUnavailableError,
    ConcurrencyError,
    TimeoutError,
)


def retry_delay(attempts: int, first: float = 0.5, cap: float = 60.0) -> float:
    """Exponential backoff: 0.5 s, 1 s, 2 s, ... up to a minute."""
    return float(min(cap, first * 2 ** min(attempts, 16)))


def advisory_key(kind: str, item: UUID) -> int:
    """A signed 64-bit key for pg_advisory_lock on one item of one kind of work."""
    digest = hashlib.blake2b(kind.encode() + b":" + item.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def log_failure(log: logging.Logger, what: str, error: Exception, delay: float) -> None:
    """Transient failures are one line; anything else (a bug) gets its traceback."""
    if isinstance(error, TRANSIENT_ERRORS):
        log.warning("%s: %s; retrying in %.1fs", what, error, delay)
    else:
        log.error("%s failed; retrying in %.1fs", what, delay, exc_info=error)


def create_tables(database: Connections, tables: PageHandler) -> None:
    """Create a task feeder's tables if missing (idempotent), before its executor runs."""
    with database.connection() as conn:
        tables.setup(conn)


def run_until_stopped(stop: threading.Event, run_once: Callable[[], int], poll: float) -> None:
    """Work while there is work; when a round found none, wait `poll` seconds (or the stop)."""
    while not stop.is_set():
        if not run_once():
            stop.wait(poll)


def keep_bookings(
    conn: psycopg.Connection[Any],
    table: str,
    column: str,
    column_type: str,
    latest: dict[UUID, Any],
) -> None:
    """Bring a table of bookings (`booking_id` and one `column`) in line with a page's last word
    per booking: a value adds its row (a row already there stays as it is), None removes it."""
    kept = [(booking, value) for booking, value in latest.items() if value is not None]
    dropped = [booking for booking, value in latest.items() if value is None]
    names = {"table": sql.Identifier(table), "column": sql.Identifier(column)}
    if kept:
        conn.execute(
            sql.SQL(
                "INSERT INTO {table} (booking_id, {column}) "
                "SELECT * FROM unnest(%s::uuid[], %s::{type}[]) ON CONFLICT DO NOTHING"
            ).format(type=sql.SQL(column_type), **names),
            ([booking for booking, _ in kept], [value for _, value in kept]),
        )
    if dropped:
        conn.execute(
            sql.SQL("DELETE FROM {table} WHERE booking_id = ANY(%s)").format(**names), (dropped,)
        )


Task = Callable[[psycopg.Connection[Any]], bool]
"""One task's work, on the connection holding its lock; True when the task is finished."""


class TaskTable:
    """A process manager's outbox of tasks: one row per item (`key` column) with `due_at`,
    `attempts` and `last_error`, and, with `generation`, a counter that every event re-arming
    the task bumps (a task re-armed while it ran is not deleted: it runs again).

    A session advisory lock per item keeps two executors (threads or processes) off the same
    item; a killed worker's locks vanish with its connections, so a restart resumes at once.
    A failed task is retried with backoff, its error kept in `last_error`.
    """

    def __init__(
        self,
        database: Connections,
        table: str,
        key: str,
        lock_kind: str,
        log: logging.Logger,
        generation: bool = False,
    ) -> None:
        self._database = database
        self._lock_kind = lock_kind
        self._log = log
        names = {"table": sql.Identifier(table), "key": sql.Identifier(key)}
        same_run = sql.SQL(" AND generation = %(generation)s" if generation else "")
        self._due = sql.SQL(
            "SELECT {key} FROM {table} WHERE due_at <= now() ORDER BY due_at LIMIT %(limit)s"
        ).format(**names)
        self._claim = sql.SQL(
            "SELECT attempts, {generation} FROM {table} WHERE {key} = %(item)s AND due_at <= now()"
        ).format(generation=sql.SQL("generation" if generation else "NULL"), **names)
        self._postpone = sql.SQL(
            "UPDATE {table} SET attempts = attempts + 1, last_error = %(error)s, "
            "due_at = now() + make_interval(secs => %(delay)s) WHERE {key} = %(item)s{same_run}"
        ).format(same_run=same_run, **names)
        self._finish = sql.SQL("DELETE FROM {table} WHERE {key} = %(item)s{same_run}").format(
            same_run=same_run, **names
        )

    def due(self, limit: int) -> Sequence[UUID]:
        """The items whose tasks are due now, the most overdue first."""
        with self._database.connection() as conn:
            return [row[0] for row in conn.execute(self._due, {"limit": limit}).fetchall()]

    def run(self, item: UUID, task: Task, what: str) -> bool:
        """Run the item's task if it is due and no other executor has the item; returns
        whether it ran (finished, or failed and postponed). `what` names it in the log."""
        key = advisory_key(self._lock_kind, item)
        with self._database.connection() as conn:
            locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not locked or not locked[0]:
                return False  # another executor has this item
            try:
                return self._run_locked(conn, item, task, what)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _run_locked(self, conn: psycopg.Connection[Any], item: UUID, task: Task, what: str) -> bool:
        row = conn.execute(self._claim, {"item": item}).fetchone()
        if row is None:
            return False  # done meanwhile by another executor
        attempts, generation = row
        try:
            finished = task(conn)
        except Exception as error:  # a worker survives its tasks' failures: retried later
            delay = retry_delay(attempts)
            log_failure(self._log, what, error, delay)
            error_text = f"{type(error).__name__}: {error}"[:1000]
            conn.execute(
                self._postpone,
                {"error": error_text, "delay": delay, "item": item, "generation": generation},
            )
            return True
        if finished:
            conn.execute(self._finish, {"item": item, "generation": generation})
        return True


class BatchExecutor:
    """Executes the due tasks of one task table, each item's work in batches of bookings sent
    through the shows' writers (show cancellation, reschedule notices, deactivations).
    Subclasses name their task table and say what one task does (`work`), how the log names
    it (`describe`) and which follower keeps their tables (`tables`)."""

    task_table: ClassVar[str]
    task_key: ClassVar[str]
    lock_kind: ClassVar[str]
    rearmable: ClassVar[bool] = False  # TaskTable(generation=...): re-armed while it runs

    def __init__(
        self,
        store: Connections,
        bookings: BookingCommands,
        poll_interval: float = 0.05,
        command_timeout: float = 10.0,
        batch: int = 100,
    ) -> None:
        self._store = store
        self._bookings = bookings
        logger = logging.getLogger(type(self).__module__)
        self._tasks = TaskTable(
            store, self.task_table, self.task_key, self.lock_kind, logger, self.rearmable
        )
        self._poll = poll_interval
        # A batch loads and changes `batch` bookings in one decision: more time than a
        # customer's command.
        self._timeout = max(command_timeout, 30.0)
        self._batch = batch

    def tables(self) -> PageHandler:
        """The follower that keeps this executor's tables (created by `setup`)."""
        raise NotImplementedError

    def setup(self) -> None:
        create_tables(self._store, self.tables())

    def run(self, stop: threading.Event) -> None:
        self.setup()
        run_until_stopped(stop, lambda: self.run_once(stop), self._poll)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Execute the tasks due now; returns how many were worked on."""
        worked = 0
        for item in self._tasks.due(16):
            if stop is not None and stop.is_set():
                break

            def task(conn: psycopg.Connection[Any], item: UUID = item) -> bool:
                return self.work(conn, item, stop)

            worked += self._tasks.run(item, task, self.describe(item))
        return worked

    def work(self, conn: psycopg.Connection[Any], item: UUID, stop: threading.Event | None) -> bool:
        """Do the item's task on `conn` (holding its lock), idempotently; True once it is
        finished, False if asked to stop first."""
        raise NotImplementedError

    def describe(self, item: UUID) -> str:
        """What the task is, for the log."""
        raise NotImplementedError
