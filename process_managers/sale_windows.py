"""Sale windows: a show's sale opens at its `sale_opens_at` and closes at its `sale_closes_at`
(by default the show's start) by itself, no manual call needed.

- `SaleWindowTasks` follows the log. In each page's transaction, a `Show.Scheduled` arms an
  "open" task (if the show has an opening time) and a "close" task in `sale_window_tasks`, due
  at those times; a `Show.Cancelled` or `Show.Deleted` disarms its show's tasks. An edit
  re-arms them: a `Show.SaleWindowChanged` moves each task to its new time (no opening time:
  no open task), a `Show.Rescheduled` moves the close task with the window's new close. A time
  already past when the edit was made is one the edit did not change (the domain refuses new
  times in the past): its task ran already or is due now, and is left alone. A re-arm bumps
  the task's generation, so a task re-armed while it runs is not deleted by that run: it runs
  again at its new time (a no-op if there is nothing to do). Shows scheduled before sale
  windows existed carry no window (their events load with None): no task, as before.
- `SaleWindows` executes the due tasks (`scheduling.TaskTable`: an advisory lock per task keeps
  two executors off it, a failure is retried with backoff) through ShowCommands
  `open_sale_on_schedule`/`close_sale`, so the show's writer decides them like the organiser's
  calls; an opening retried late, once its window has closed, opens nothing (a retry's backoff
  can move it after the closing task, which found nothing to close). A
  task is deleted only after its command committed; a crash in between runs it again, and the
  second run finds the sale already open (or closed): a ShowStatusError, which here means
  "nothing to do", so a sale opens exactly once.

A show with a presale (`presale_opens_at`) also has a "presale" task, armed, moved and disarmed
the same way (`Show.PresaleWindowChanged`): at that time its inventory records PresaleOpened
(ShowCommands `open_presale_on_schedule`), from which only holds with a presale code are
accepted until the sale opens; nothing to do once the sale is open or its window closed.

The manual `open-sale` and `close-sale` stay as overrides, and each window task runs once, at
its time, whatever the organiser did before: at `sale_opens_at` the sale opens unless it is
already on sale or the show is cancelled (so a sale opened early stays open; one closed by hand
before that time opens then); at `sale_closes_at` it closes if it is on sale (a sale reopened
by hand after that time stays open, but no hold is accepted once the show has started).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

import psycopg

from commands.models import CloseSale, OpenSale
from commands.ports import Connections
from commands.shows import ShowCommands
from domain.booking import event_name
from domain.errors import ShowStatusError
from domain.show import Show
from infra.log_follower import LoggedEvent
from process_managers.scheduling import TaskTable, create_tables, run_until_stopped

log = logging.getLogger(__name__)

TASKS_DDL = """
CREATE TABLE IF NOT EXISTS sale_window_tasks (
    task_id uuid PRIMARY KEY,
    show_id uuid NOT NULL,
    action text NOT NULL CHECK (action IN ('open', 'close', 'presale')),
    due_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
-- Tables created before edits re-armed tasks lack the generation: the first one is 1.
ALTER TABLE sale_window_tasks ADD COLUMN IF NOT EXISTS generation bigint NOT NULL DEFAULT 1;
-- Tables created before presales took only 'open' and 'close' tasks.
DO $$ BEGIN
    PERFORM pg_advisory_xact_lock(8318274291806334053);
    IF EXISTS (
        SELECT 1 FROM pg_constraint WHERE conname = 'sale_window_tasks_action_check'
        AND pg_get_constraintdef(oid) NOT LIKE '%presale%'
    ) THEN
        ALTER TABLE sale_window_tasks DROP CONSTRAINT sale_window_tasks_action_check;
        ALTER TABLE sale_window_tasks ADD CONSTRAINT sale_window_tasks_action_check
            CHECK (action IN ('open', 'close', 'presale'));
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS sale_window_tasks_due ON sale_window_tasks (due_at);
CREATE INDEX IF NOT EXISTS sale_window_tasks_show ON sale_window_tasks (show_id)
"""

OPEN = "open"
CLOSE = "close"
PRESALE = "presale"
SCHEDULED_EVENT = event_name(Show, "Scheduled")
CANCELLED_EVENT = event_name(Show, "Cancelled")
DELETED_EVENT = event_name(Show, "Deleted")
RESCHEDULED_EVENT = event_name(Show, "Rescheduled")
WINDOW_CHANGED_EVENT = event_name(Show, "SaleWindowChanged")
PRESALE_CHANGED_EVENT = event_name(Show, "PresaleWindowChanged")
# What a page does to a task: arm it if missing (a new show), re-arm it (move it, whether it
# ran already or not), or disarm it.
ARM = "arm"
REARM = "rearm"
DISARM = "disarm"
# Task ids are derived from (show, action): arming the same task twice is one row.
TASK_NAMESPACE = UUID("6f1c1f4e-2b1d-4c57-9a55-5a1e0a7d0b14")


def task_id_for(show_id: UUID, action: str) -> UUID:
    return uuid5(TASK_NAMESPACE, f"{show_id}:{action}")


class SaleWindowTasks:
    """PageHandler: the open and close tasks of each show's sale window, fed from the log."""

    name = "sale-windows"

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(TASKS_DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        tasks: dict[UUID, tuple[str, UUID, str, datetime | None]] = {}  # the page's last word
        gone: set[UUID] = set()  # shows cancelled or deleted

        def decide(what: str, show_id: UUID, action: str, due_at: datetime | None) -> None:
            tasks[task_id_for(show_id, action)] = (what, show_id, action, due_at)

        for logged in page:
            event = logged.event
            show_id = event.originator_id
            if logged.type_name == SCHEDULED_EVENT:
                for action, attribute in (
                    (OPEN, "sale_opens_at"),
                    (CLOSE, "sale_closes_at"),
                    (PRESALE, "presale_opens_at"),
                ):
                    due_at = getattr(event, attribute, None)  # None: an older event
                    if due_at is not None:
                        decide(ARM, show_id, action, due_at)
            elif logged.type_name == RESCHEDULED_EVENT:
                if event.sale_closes_at > event.timestamp:
                    decide(REARM, show_id, CLOSE, event.sale_closes_at)
            elif logged.type_name == WINDOW_CHANGED_EVENT:
                if event.sale_opens_at is None:
                    decide(DISARM, show_id, OPEN, None)
                elif event.sale_opens_at > event.timestamp:
                    decide(REARM, show_id, OPEN, event.sale_opens_at)
                if event.sale_closes_at > event.timestamp:
                    decide(REARM, show_id, CLOSE, event.sale_closes_at)
            elif logged.type_name == PRESALE_CHANGED_EVENT:
                if event.presale_opens_at is None:
                    decide(DISARM, show_id, PRESALE, None)
                elif event.presale_opens_at > event.timestamp:
                    decide(REARM, show_id, PRESALE, event.presale_opens_at)
            elif logged.type_name in (CANCELLED_EVENT, DELETED_EVENT):
                gone.add(show_id)
                for action in (OPEN, CLOSE, PRESALE):
                    tasks.pop(task_id_for(show_id, action), None)
        self._write(conn, tasks, gone)

    @staticmethod
    def _write(
        conn: psycopg.Connection[Any],
        tasks: dict[UUID, tuple[str, UUID, str, datetime | None]],
        gone: set[UUID],
    ) -> None:
        def rows(what: str) -> list[tuple[UUID, UUID, str, datetime | None]]:
            return [
                (task, show_id, action, due_at)
                for task, (kind, show_id, action, due_at) in tasks.items()
                if kind == what
            ]

        upsert = {
            ARM: "ON CONFLICT DO NOTHING",
            REARM: "ON CONFLICT (task_id) DO UPDATE SET due_at = EXCLUDED.due_at, attempts = 0, "
            "last_error = NULL, generation = sale_window_tasks.generation + 1",
        }
        for what, conflict in upsert.items():
            armed = rows(what)
            if armed:
                conn.execute(
                    "INSERT INTO sale_window_tasks (task_id, show_id, action, due_at) "
                    "SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], "
                    f"%s::timestamptz[]) {conflict}",
                    tuple(map(list, zip(*armed, strict=True))),
                )
        disarmed = [task for task, *_ in rows(DISARM)]
        if disarmed:
            conn.execute("DELETE FROM sale_window_tasks WHERE task_id = ANY(%s)", (disarmed,))
        if gone:
            conn.execute("DELETE FROM sale_window_tasks WHERE show_id = ANY(%s)", (list(gone),))


class SaleWindows:
    """Executes due sale-window tasks: opens or closes the show's sale (idempotent)."""

    def __init__(
        self,
        store: Connections,
        shows: ShowCommands,
        poll_interval: float = 0.05,
        command_timeout: float = 10.0,
    ) -> None:
        self._store = store
        self._tasks = TaskTable(
            store, "sale_window_tasks", "task_id", "sale-window", log, generation=True
        )
        self._shows = shows
        self._poll = poll_interval
        self._timeout = command_timeout

    def setup(self) -> None:
        create_tables(self._store, SaleWindowTasks())

    def run(self, stop: threading.Event) -> None:
        self.setup()
        run_until_stopped(stop, self.run_once, self._poll)

    def run_once(self) -> int:
        """Execute the tasks due now; returns how many were worked on."""
        worked = 0
        for task_id in self._tasks.due(64):

            def execute(conn: psycopg.Connection[Any], task_id: UUID = task_id) -> bool:
                return self.execute(conn, task_id)

            worked += self._tasks.run(task_id, execute, f"sale window task {task_id}")
        return worked

    def execute(self, conn: psycopg.Connection[Any], task_id: UUID) -> bool:
        """Open or close the task's show's sale; True (the task is done) also when there was
        nothing to do: the sale already open or closed, or the show cancelled."""
        row = conn.execute(
            "SELECT show_id, action FROM sale_window_tasks WHERE task_id = %s", (task_id,)
        ).fetchone()
        if row is None:
            return True  # disarmed meanwhile
        show_id, action = row
        future: Future[int]
        if action == OPEN:
            future = self._shows.open_sale_on_schedule(OpenSale(show_id=show_id))
        elif action == PRESALE:
            future = self._shows.open_presale_on_schedule(OpenSale(show_id=show_id))
        else:
            future = self._shows.close_sale(CloseSale(show_id=show_id))
        try:
            future.result(timeout=self._timeout)
        except ShowStatusError as refused:
            log.info("sale window of show %s: nothing to %s (%s)", show_id, action, refused)
        else:
            log.info("sale window of show %s: %s done", show_id, action)
        return True
