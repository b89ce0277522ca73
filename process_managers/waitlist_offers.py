"""Waiting-list offers: when tickets of a show with a waiting list come back, they are offered to
the waiting fans in first-come order, and what became of each offer is recorded.

- `WaitlistOfferTasks` follows the log. In each page's transaction it keeps `waitlist_streams`
  (the waiting list's and the inventory's stream -> their show, from `WaitingList.Created`) and
  arms one row per show in `waitlist_settle_tasks` after anything that can change what the list
  is owed: seats released (an expired, declined or cancelled hold, an offer among them), seats
  unblocked, a GA capacity changed, seats sold (an offer paid), the sale opened, an entry
  joined or left. A show without a waiting list costs a lookup in memory. Re-arming a task
  that is running bumps its generation: that run does not delete it, it runs again.
- `WaitlistOffers` executes the due tasks (`scheduling.TaskTable`: an advisory lock per show,
  retries with backoff) with `settle_waiting_list` through the show's writer: one decision
  that records offers confirmed (OfferAccepted) or released (OfferLapsed), then holds seats
  for the waiting entries the free tickets can serve, in order (OfferMade, each with its
  `offer: true` booking). The task is deleted only after that committed; a crash in between
  settles again, which is state-based and finds nothing left to do twice: an entry has at most
  one offer, whose booking id is derived from the entry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg

from commands.ports import Connections
from commands.waitlist import WaitlistCommands
from domain.booking import event_name
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from domain.waitlist import WaitingList
from infra.log_follower import LoggedEvent
from process_managers.scheduling import TaskTable, create_tables, run_until_stopped

log = logging.getLogger(__name__)

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS waitlist_streams (
    stream_id uuid PRIMARY KEY,
    show_id uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS waitlist_settle_tasks (
    show_id uuid PRIMARY KEY,
    due_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    generation bigint NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS waitlist_settle_tasks_due ON waitlist_settle_tasks (due_at)
"""

LIST_CREATED = event_name(WaitingList, "Created")
# The waiting list's own events that call for a settlement (the ones a settlement records
# itself, offers made, accepted or lapsed, do not).
LIST_CHANGES = frozenset(
    {event_name(WaitingList, "EntryJoined"), event_name(WaitingList, "EntryLeft")}
)
# Inventory events after which the list may be owed tickets, or an offer was paid.
INVENTORY_CHANGES = frozenset(
    {
        event_name(SeatInventory, "SeatsReleased"),
        event_name(SeatInventory, "SeatsUnblocked"),
        event_name(SeatInventory, "GeneralCapacityChanged"),
        event_name(SeatInventory, "SeatsSold"),
        event_name(SeatInventory, "SaleOpened"),
    }
)
MAX_REMEMBERED_STREAMS = 100_000


class WaitlistOfferTasks:
    """PageHandler: which streams belong to a show with a waiting list, and a settle task per
    show to do."""

    name = "waitlist-offers"

    def __init__(self) -> None:
        # stream -> its show, or None: no waiting list (until a Created this follower sees).
        self._shows: dict[UUID, UUID | None] = {}

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(TABLES_DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        new_streams: dict[UUID, UUID] = {}
        due: set[UUID] = set()
        interesting = [
            logged
            for logged in page
            if logged.type_name == LIST_CREATED
            or logged.type_name in LIST_CHANGES
            or logged.type_name in INVENTORY_CHANGES
        ]
        if not interesting:
            return
        self._learn(conn, [logged.event.originator_id for logged in interesting])
        for logged in interesting:
            event = logged.event
            if logged.type_name == LIST_CREATED:
                show_id = event.show_id
                for stream in (event.originator_id, inventory_id_for(show_id)):
                    new_streams[stream] = show_id
                    self._shows[stream] = show_id
                due.add(show_id)
                continue
            show = self._shows.get(event.originator_id)
            if show is not None:
                due.add(show)
        if new_streams:
            conn.execute(
                "INSERT INTO waitlist_streams (stream_id, show_id) "
                "SELECT * FROM unnest(%s::uuid[], %s::uuid[]) ON CONFLICT DO NOTHING",
                (list(new_streams), list(new_streams.values())),
            )
        if due:
            conn.execute(
                "INSERT INTO waitlist_settle_tasks (show_id) SELECT unnest(%s::uuid[]) "
                "ON CONFLICT (show_id) DO UPDATE SET due_at = now(), attempts = 0, "
                "last_error = NULL, generation = waitlist_settle_tasks.generation + 1",
                (sorted(due),),
            )

    def _learn(self, conn: psycopg.Connection[Any], streams: list[UUID]) -> None:
        """Look up the streams this process has not seen yet (one query per page at most)."""
        unknown = list({s for s in streams if s not in self._shows})
        if not unknown:
            return
        if len(self._shows) + len(unknown) > MAX_REMEMBERED_STREAMS:
            self._shows.clear()  # a cache: the table has them all
        found = dict(
            conn.execute(
                "SELECT stream_id, show_id FROM waitlist_streams WHERE stream_id = ANY(%s)",
                (unknown,),
            ).fetchall()
        )
        for stream in unknown:
            self._shows[stream] = found.get(stream)


class WaitlistOffers:
    """Executes due settle tasks: each show's waiting list is settled through its writer."""

    def __init__(
        self,
        store: Connections,
        waitlist: WaitlistCommands,
        poll_interval: float = 0.05,
        command_timeout: float = 10.0,
    ) -> None:
        self._store = store
        self._waitlist = waitlist
        self._tasks = TaskTable(
            store, "waitlist_settle_tasks", "show_id", "waitlist-settle", log, generation=True
        )
        self._poll = poll_interval
        # A settlement may load and change many bookings in one decision.
        self._timeout = max(command_timeout, 30.0)

    def setup(self) -> None:
        create_tables(self._store, WaitlistOfferTasks())

    def run(self, stop: threading.Event) -> None:
        self.setup()
        run_until_stopped(stop, self.run_once, self._poll)

    def run_once(self) -> int:
        """Settle the shows whose tasks are due now; returns how many were worked on."""
        worked = 0
        for show_id in self._tasks.due(64):

            def settle(conn: psycopg.Connection[Any], show_id: UUID = show_id) -> bool:
                return self.settle(show_id)

            worked += self._tasks.run(show_id, settle, f"settling the waiting list of {show_id}")
        return worked

    def settle(self, show_id: UUID) -> bool:
        settled = self._waitlist.settle_waiting_list(show_id).result(timeout=self._timeout)
        if settled.offered or settled.accepted or settled.lapsed:
            log.info(
                "waiting list of show %s: %d offers made, %d accepted, %d lapsed",
                show_id,
                len(settled.offered),
                len(settled.accepted),
                len(settled.lapsed),
            )
        return True
