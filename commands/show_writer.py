"""One writer per show: commands for a show are queued and decided in batches (group commit).

On a hot on-sale every booking touches the same SeatInventory, so optimistic retries alone turn
into a retry storm. Instead each show has one queue; whoever finds the queue idle drains it on a
worker thread: it takes the cross-process show lock, checks the cached inventory is current,
decides every queued command against it and appends all their events in one transaction. A lone
command therefore goes at once, and under load a batch costs one round of locks and one commit.
Each command still gets its own answer: its result, or its own error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from commands.errors import (
    CommandError,
    ConcurrencyError,
    NotFoundError,
    VersionConflictError,
)
from commands.ports import EventStore
from commands.replies import LoopReply, Reply, ThreadReply, deliver
from domain.account import Account
from domain.booking import Booking
from domain.door import DoorList
from domain.errors import DomainError
from domain.ids import door_list_id_for, inventory_id_for
from domain.inventory import SeatInventory
from domain.show import Show

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)
log = logging.getLogger(__name__)

UNKNOWN_HOLDER = "Ticket holder"
SNAPSHOT_DEBT_LIMIT = 10  # x snapshot_every: snapshot even while busy beyond this many events
# A drain that just committed keeps the show lock this long for the next commands (gates and
# fans answered a moment ago ask again at once): their batch skips the lock and the version
# checks. Never beyond MAX_LOCK_HOLD in one go, so another process's writer gets its turn.
LINGER_SECONDS = 0.002
MAX_LOCK_HOLD_SECONDS = 0.1


class ShowBatch:
    """What a decision sees: the show's inventory, its door list (tickets) and the bookings it
    touches in this batch."""

    def __init__(
        self,
        inventory: SeatInventory,
        store: EventStore,
        door_lists: Callable[[], DoorList] | None = None,
        companions: Companions | None = None,
    ) -> None:
        self.inventory = inventory
        self._store = store
        self._companions = Companions(store) if companions is None else companions
        self._companion_pending_at_load: dict[UUID, int] = {}
        self._bookings: dict[UUID, Booking] = {}
        self._show: Show | None = None
        self._touched: list[Booking] = []  # bookings the current decision looked at
        self._door_lists = door_lists
        self._door_list: DoorList | None = None
        self._door_pending_at_load = 0  # its Created, when this batch created it
        self._names: dict[UUID, str] = {}  # ticket holders' names, by account

    def door_list(self) -> DoorList:
        """The show's tickets, loaded on first use (a show without tickets yet gets an empty
        door list, saved with the batch). Batches that never ask do not load it."""
        if self._door_list is None:
            if self._door_lists is not None:
                door = self._door_lists()
            else:
                door = load_door_list(self._store, self.inventory.show_id)
            self._door_list = door
            # Creating it is no change a failing decision made half-way.
            self._door_pending_at_load = len(door.pending_events)
        return self._door_list

    def companion(self, aggregate_id: UUID, kind: type[A], new: Callable[[], A]) -> A:
        """Another aggregate of the show decided in its writer (its waiting list, its presale
        codes): loaded on first use, or `new()` if it has none yet (saved with the batch once
        the decision changed it). Cached by the writer between batches like the inventory."""
        found = self.find_companion(aggregate_id, kind)
        if found is None:
            found = new()
            if found.id != aggregate_id:  # its class must derive the id (create_id)
                raise ValueError(f"a new {kind.__name__} has id {found.id}, not {aggregate_id}")
            self._companions.adopt(aggregate_id, found)
            # Creating it is no change a failing decision made half-way.
            self._companion_pending_at_load[aggregate_id] = len(found.pending_events)
        return found

    def find_companion(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """The companion aggregate if the show has one (None: never created, nothing made)."""
        found = self._companions.find(aggregate_id, kind)
        if found is not None and aggregate_id not in self._companion_pending_at_load:
            self._companion_pending_at_load[aggregate_id] = len(found.pending_events)
        return found

    def show(self) -> Show:
        """The Show aggregate itself, loaded on first use (sale status changes need it)."""
        if self._show is None:
            self._show = self._store.get(self.inventory.show_id, Show)
        return self._show

    def show_starts_at(self) -> datetime:
        """When the show starts: the inventory knows (inventories created before they recorded
        it ask the Show, loaded once per batch)."""
        known = self.inventory.starts_at
        return self.show().starts_at if known is None else known

    def booking(self, booking_id: UUID) -> Booking:
        found = self._bookings.get(booking_id)
        if found is None:
            found = self._store.get(booking_id, Booking)
            self._bookings[booking_id] = found
        self._touched.append(found)
        return found

    def holder_name(self, account_id: UUID) -> str:
        """The name tickets print for an account (its current name; a booking whose customer
        has no account, e.g. made by a script, gets a generic one)."""
        name = self._names.get(account_id)
        if name is None:
            try:
                name = self._store.get(account_id, Account).name
            except NotFoundError:
                name = UNKNOWN_HOLDER
            self._names[account_id] = name
        return name

    def booking_exists(self, booking_id: UUID) -> bool:
        return booking_id in self._bookings or self._store.exists(booking_id)

    def add_booking(self, booking: Booking) -> None:
        self._bookings[booking.id] = booking
        self._touched.append(booking)

    def begin_decision(self) -> int:
        """Start a decision; returns the pending-event count to compare after it."""
        self._touched = []
        return self.pending_count()

    def pending_count(self) -> int:
        """Pending events of what the current decision can have changed (cheap per decision)."""
        shows: list[Aggregate] = [] if self._show is None else [self._show]
        candidates: list[Aggregate] = [self.inventory, *shows, *self._touched]
        door = self._door_list
        door_pending = 0 if door is None else len(door.pending_events) - self._door_pending_at_load
        companions = sum(
            len(self._companions.loaded(aggregate_id).pending_events) - at_load
            for aggregate_id, at_load in self._companion_pending_at_load.items()
        )
        return sum(len(a.pending_events) for a in candidates) + door_pending + companions

    def changed(self) -> list[Aggregate]:
        shows: list[Aggregate] = [] if self._show is None else [self._show]
        # The door list last: on a tie of timestamps the log keeps this order, and a booking's
        # confirmation (or cancellation) must come before its tickets' issue (or voiding).
        doors: list[Aggregate] = [] if self._door_list is None else [self._door_list]
        companions = [self._companions.loaded(i) for i in self._companion_pending_at_load]
        everything: list[Aggregate] = [
            self.inventory,
            *shows,
            *self._bookings.values(),
            *companions,
            *doors,
        ]
        return [a for a in everything if a.pending_events]


class Companions:
    """A show's other aggregates decided in its writer, cached between batches; each one's
    version is checked against the store at its first use in a drain (another process may
    have written it), and absence is cached too (a show without a waiting list costs one
    version query per drain, not a load per batch)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._cached: dict[UUID, Aggregate | None] = {}  # None: the store has none
        self._checked: set[UUID] = set()

    def new_drain(self) -> None:
        self._checked.clear()

    def forget(self) -> None:
        self._cached.clear()
        self._checked.clear()

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        if aggregate_id not in self._checked:
            self._checked.add(aggregate_id)
            version = self._store.version_of(aggregate_id)
            cached = self._cached.get(aggregate_id)
            fresh = (cached is None and version is None and aggregate_id in self._cached) or (
                cached is not None and not cached.pending_events and cached.version == version
            )
            if not fresh:
                self._cached[aggregate_id] = (
                    None if version is None else self._store.get(aggregate_id, kind)
                )
        found = self._cached.get(aggregate_id)
        if found is not None and not isinstance(found, kind):
            raise NotFoundError(kind.__name__, aggregate_id)
        return found

    def adopt(self, aggregate_id: UUID, aggregate: Aggregate) -> None:
        self._cached[aggregate_id] = aggregate

    def loaded(self, aggregate_id: UUID) -> Aggregate:
        found = self._cached.get(aggregate_id)
        assert found is not None, aggregate_id
        return found


def load_door_list(store: EventStore, show_id: UUID) -> DoorList:
    """The show's door list from the store, or a new (unsaved) one if it has none yet."""
    try:
        return store.get(door_list_id_for(show_id), DoorList)
    except NotFoundError:
        return DoorList(show_id=show_id)


Decision = Callable[[ShowBatch], T]


@dataclass
class _Queued(Generic[T]):
    decide: Decision[T]
    reply: Reply  # gets (ok, (result, position)) or (False, error)
    outcome: tuple[bool, Any] | None = None  # (ok, value or error) decided in this attempt


class ShowWriter:
    """Serializes one show's commands; keeps that show's inventory cached between batches."""

    def __init__(
        self,
        show_id: UUID,
        store: EventStore,
        executor: ThreadPoolExecutor,
        max_batch: int,
        snapshot_every: int = 1000,
    ) -> None:
        self.show_id = show_id
        self.inventory_id = inventory_id_for(show_id)
        self._store = store
        self._executor = executor
        self._max_batch = max_batch
        self._queue: deque[_Queued[Any]] = deque()
        self._mutex = threading.Lock()
        self._arrived = threading.Condition(self._mutex)  # a command queued while draining
        self._draining = False
        self._inventory: SeatInventory | None = None
        self._snapshot_every = snapshot_every
        self._snapshot_version = 0
        # The show's tickets, cached like the inventory once a batch asked for them; their
        # version is checked against the store at the first use in each drain.
        self.door_list_id = door_list_id_for(show_id)
        self._door_list: DoorList | None = None
        self._door_checked = False
        self._door_snapshot_version = 0
        self._companions = Companions(store)  # its waiting list, its presale codes
        self._last_command_at = time.monotonic()
        self.batches = 0
        self.commands = 0
        self.conflicts = 0

    @property
    def inventory_cached(self) -> bool:
        return self._inventory is not None

    @property
    def busy(self) -> bool:
        with self._mutex:
            return self._draining or bool(self._queue)

    def submit(self, decide: Decision[T]) -> Future[tuple[T, int]]:
        """Queue a decision; the future gives (its result, global position after the commit)."""
        reply = ThreadReply()
        self._enqueue(_Queued(decide, reply))
        return reply.future

    def submit_async(self, decide: Decision[T]) -> asyncio.Future[tuple[T, int]]:
        """`submit` for a caller on an event loop (call it on the loop's thread): the loop is
        woken once per batch rather than once per command."""
        reply = LoopReply()
        self._enqueue(_Queued(decide, reply))
        return reply.future

    def _enqueue(self, queued: _Queued[Any]) -> None:
        self._last_command_at = time.monotonic()
        with self._mutex:
            self._queue.append(queued)
            start = not self._draining
            self._draining = True
            if not start:
                self._arrived.notify()
        if start:
            self._executor.submit(self._drain)

    def _drain(self) -> None:
        try:
            with self._store.show_lock(self.show_id):
                locked_at = time.monotonic()
                self._refresh_cache()
                while batch := self._take_batch():
                    self._run(batch)
                    if time.monotonic() - locked_at < MAX_LOCK_HOLD_SECONDS:
                        self._await_more(LINGER_SECONDS)
                # Snapshots wait for a quiet moment (tidy_when_idle): a big one takes tens
                # of milliseconds, which fans of a hot show would spend waiting. Unless so many
                # events went by that a cold load would replay too many.
                if self._snapshot_debt() >= SNAPSHOT_DEBT_LIMIT * self._snapshot_every:
                    self._snapshot()
                if self._door_snapshot_debt() >= SNAPSHOT_DEBT_LIMIT * self._snapshot_every:
                    self._snapshot_door_list()
        except BaseException as error:  # the lock or the store failed: every waiter hears it
            self._forget()
            self._fail_all(error)
        finally:
            self._finish()

    def _finish(self) -> None:
        """Done with the writer's state: hand over to a drain if commands arrived meanwhile."""
        with self._mutex:
            self._draining = False
            restart = bool(self._queue)
            if restart:
                self._draining = True
        if restart:
            self._executor.submit(self._drain)

    def tidy_when_idle(self, snapshot_after: float, forget_after: float) -> None:
        """When no command came for `snapshot_after` seconds, snapshot the cached inventory if
        enough events went by; after `forget_after` seconds, also drop it from memory (a quiet
        or sold-out show gives its memory back; its next command loads it from the snapshot).
        Runs on the writer's executor, excluding drains meanwhile."""
        idle = time.monotonic() - self._last_command_at
        if idle < snapshot_after or self._inventory is None:
            return
        forget = idle >= forget_after
        debt = max(self._snapshot_debt(), self._door_snapshot_debt())
        if not forget and debt < self._snapshot_every:
            return
        with self._mutex:
            if self._draining or self._queue:
                return
            self._draining = True
        self._executor.submit(self._tidy_then_finish, forget)

    def _tidy_then_finish(self, forget: bool) -> None:
        try:
            if self._snapshot_debt() >= self._snapshot_every:
                self._snapshot()
            if self._door_snapshot_debt() >= self._snapshot_every:
                self._snapshot_door_list()
            if forget:
                self._forget()
        finally:
            self._finish()

    def _snapshot_debt(self) -> int:
        inventory = self._inventory
        return 0 if inventory is None else inventory.version - self._snapshot_version

    def _door_snapshot_debt(self) -> int:
        door = self._door_list
        return 0 if door is None else door.version - self._door_snapshot_version

    def _forget(self) -> None:
        """Drop the cached state (stale, half-changed, or idle): the next batch loads it."""
        self._inventory = None
        self._door_list = None
        self._companions.forget()

    def _take_batch(self) -> list[_Queued[Any]]:
        with self._mutex:
            n = min(len(self._queue), self._max_batch)
            return [self._queue.popleft() for _ in range(n)]

    def _await_more(self, seconds: float) -> None:
        """Wait (lock held, GIL released) up to `seconds` for a command, unless one is queued."""
        with self._mutex:
            if not self._queue:
                self._arrived.wait(seconds)

    def _fail_all(self, error: BaseException) -> None:
        with self._mutex:
            waiting = list(self._queue)
            self._queue.clear()
        deliver((queued.reply, False, error) for queued in waiting)

    def _refresh_cache(self) -> None:
        """Another process may have written since our last batch: the version tells."""
        self._door_checked = False  # checked when a batch of this drain first asks for it
        self._companions.new_drain()
        if self._inventory is None:
            return
        if self._store.version_of(self.inventory_id) != self._inventory.version:
            self._inventory = None

    def _load_inventory(self) -> SeatInventory:
        if self._inventory is None:
            try:
                self._inventory = self._store.get(self.inventory_id, SeatInventory)
            except NotFoundError:
                raise NotFoundError("show", self.show_id) from None
            self._snapshot_version = self._inventory.version  # loaded from one, or near enough
        return self._inventory

    def _load_door_list(self) -> DoorList:
        door = self._door_list
        stale = (
            door is not None
            and not self._door_checked
            and self._store.version_of(self.door_list_id) != door.version
        )
        if stale:  # another process wrote it since this one cached it
            door = self._door_list = None
        self._door_checked = True
        if door is None:
            door = self._door_list = load_door_list(self._store, self.show_id)
            self._door_snapshot_version = door.version if door.pending_events == [] else 0
        return door

    def _run(self, batch: list[_Queued[Any]], attempts: int = 5) -> None:
        try:
            for _ in range(attempts):
                if self._attempt(batch):
                    return
                self.conflicts += 1
            error = ConcurrencyError(f"show {self.show_id} kept changing; try again")
            deliver((queued.reply, False, error) for queued in batch)
        except BaseException as error:
            self._forget()
            deliver((queued.reply, False, error) for queued in batch)

    def _attempt(self, batch: list[_Queued[Any]], alone: bool = False) -> bool:
        """Decide the whole batch against the cached inventory and commit it once.
        False means a version conflict: the cache was dropped and the batch must be redone."""
        ctx = ShowBatch(self._load_inventory(), self._store, self._load_door_list, self._companions)
        for queued in batch:
            before = ctx.begin_decision()
            try:
                queued.outcome = (True, queued.decide(ctx))
            except (DomainError, NotFoundError) as error:
                if ctx.pending_count() != before:
                    # A decision failed half-way: the cached state is no longer trustworthy.
                    self._forget()
                    if alone:
                        deliver([(queued.reply, False, error)])
                        return True
                    return self._run_alone(batch)
                queued.outcome = (False, error)
        try:
            position = self._store.save(*ctx.changed())
        except VersionConflictError:
            self._forget()
            return False
        self.batches += 1
        self.commands += len(batch)
        deliver(_answer(queued, position) for queued in batch)
        return True

    def _snapshot(self) -> None:
        """So that loading a hot show never replays thousands of events."""
        inventory = self._inventory
        if inventory is None:
            return
        try:
            self._store.snapshot(inventory)
            self._snapshot_version = inventory.version
        except CommandError:
            log.warning("snapshot of %s failed; will retry later", self.inventory_id)

    def _snapshot_door_list(self) -> None:
        door = self._door_list
        if door is None or door.pending_events:
            return
        try:
            self._store.snapshot(door)
            self._door_snapshot_version = door.version
        except CommandError:
            log.warning("snapshot of %s failed; will retry later", self.door_list_id)

    def _run_alone(self, batch: list[_Queued[Any]]) -> bool:
        """Slow path after a half-applied decision: one commit per command, fresh state each."""
        for queued in batch:
            sub = [_Queued(queued.decide, queued.reply)]
            for _ in range(5):
                if self._attempt(sub, alone=True):
                    break
            else:
                deliver([(queued.reply, False, ConcurrencyError("try again"))])
        return True


def _answer(queued: _Queued[Any], position: int) -> tuple[Reply, bool, Any]:
    assert queued.outcome is not None
    ok, value = queued.outcome
    return queued.reply, ok, (value, position) if ok else value


class ShowWriters:
    """The writers of this process, one per show, created on demand; idle ones are evicted."""

    def __init__(
        self,
        store: EventStore,
        max_batch: int = 500,
        max_cached: int = 256,
        snapshot_every: int = 1000,
        snapshot_idle_seconds: float = 1.0,
        forget_idle_seconds: float = 300.0,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._snapshot_every = snapshot_every
        self._max_cached = max_cached
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="show-writer")
        self._writers: OrderedDict[UUID, ShowWriter] = OrderedDict()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._snapshotter = threading.Thread(
            target=self._tidy_idle_writers,
            args=(snapshot_idle_seconds, forget_idle_seconds),
            name="show-snapshots",
            daemon=True,
        )
        self._snapshotter.start()

    def _tidy_idle_writers(self, snapshot_after: float, forget_after: float) -> None:
        while not self._closing.wait(snapshot_after / 4):
            with self._lock:
                writers = list(self._writers.values())
            for writer in writers:
                writer.tidy_when_idle(snapshot_after, forget_after)

    def for_show(self, show_id: UUID) -> ShowWriter:
        with self._lock:
            writer = self._writers.get(show_id)
            if writer is None:
                writer = ShowWriter(
                    show_id, self._store, self._executor, self._max_batch, self._snapshot_every
                )
                self._writers[show_id] = writer
                self._evict_idle()
            self._writers.move_to_end(show_id)
            return writer

    def _evict_idle(self) -> None:
        excess = len(self._writers) - self._max_cached
        for show_id in list(self._writers):
            if excess <= 0:
                break
            if not self._writers[show_id].busy:
                del self._writers[show_id]
                excess -= 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            writers = list(self._writers.values())
        return {
            "batches": sum(w.batches for w in writers),
            "commands": sum(w.commands for w in writers),
            "conflicts": sum(w.conflicts for w in writers),
            "cached_inventories": sum(w.inventory_cached for w in writers),
        }

    def close(self) -> None:
        self._closing.set()
        self._snapshotter.join()
        self._executor.shutdown(wait=True, cancel_futures=False)
