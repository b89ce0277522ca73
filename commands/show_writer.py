"""One writer per show: commands for a show are queued and decided in batches (group commit).

On a hot on-sale every booking touches the same SeatInventory, so optimistic retries alone turn
into a retry storm. Instead each show has one queue; whoever finds the queue idle drains it on a
worker thread: it takes the cross-process show lock, checks the cached inventory is current,
decides every queued command against it and appends all their events in one transaction. A lone
command therefore goes at once, and under load a batch costs one round of locks and one commit.
Each command still gets its own answer: its result, or its own error.

When the process traces (infra/tracing.py sets `trace_with`), each command takes its caller's
trace context along: a batch is a span linked to every command's trace (it belongs to many), and
each decision a span in its command's own trace, whose context the event store writes beside
the events that decision made (passed in OpenTelemetry's context under `DECISION_SPANS`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from opentelemetry import context as otel_context
from opentelemetry.trace import Link, SpanContext, Tracer, get_current_span

from commands.errors import (
    CommandError,
    ConcurrencyError,
    NotFoundError,
    VersionConflictError,
)
from commands.ports import EventStore
from commands.replies import LoopReply, Reply, ThreadReply, deliver
from commands.show_batch import Companions as Companions
from commands.show_batch import ShowBatch as ShowBatch
from commands.show_batch import load_door_list as load_door_list
from domain.door import DoorList
from domain.errors import DomainError
from domain.ids import door_list_id_for, inventory_id_for
from domain.inventory import SeatInventory

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A", bound=Aggregate)
log = logging.getLogger(__name__)

SNAPSHOT_DEBT_LIMIT = 10  # x snapshot_every: snapshot even while busy beyond this many events
# A drain that just committed keeps the show lock this long for the next commands (gates and
# fans answered a moment ago ask again at once): their batch skips the lock and the version
# checks. Never beyond MAX_LOCK_HOLD in one go, so another process's writer gets its turn.
LINGER_SECONDS = 0.002
MAX_LOCK_HOLD_SECONDS = 0.1
# When another process sells the same show (`serve --workers N`: it wrote since our last
# turn), turns are short and never linger: the fans whose requests reached the other process
# wait for our turn to end. (Not judged by how long the lock took: under load an uncontended
# lock's round trip alone exceeds a millisecond, and a lone process then lost its batching.)
SHARED_LOCK_HOLD_SECONDS = 0.02

# OpenTelemetry's context key under which a batch's save finds the decide span of each of its
# events, by (aggregate id, version) (infra/tracing.py `event_traceparents`).
DECISION_SPANS = "ticketblitz.decision-spans"
DecisionSpans = dict[tuple[UUID, int], SpanContext]
_tracer: Tracer | None = None  # None: this process does not trace (nothing captured)


def trace_with(tracer: Tracer | None) -> None:
    """Trace the writers' batches and decisions with `tracer` (None: stop)."""
    global _tracer
    _tracer = tracer


Decision = Callable[[ShowBatch], T]


@dataclass
class _Queued(Generic[T]):
    decide: Decision[T]
    reply: Reply  # gets (ok, (result, position)) or (False, error)
    outcome: tuple[bool, Any] | None = None  # (ok, value or error) decided in this attempt
    context: otel_context.Context | None = None  # the caller's trace context, when tracing


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
        self._door_snapshot_aside = False  # a copy is being snapshotted on another thread
        self._companions = Companions(store)  # its waiting list, its presale codes
        self._last_command_at = time.monotonic()
        self.batches = 0
        self.commands = 0
        self.conflicts = 0
        # Where a drain's time goes besides deciding (bench onsale --workers): waiting for the
        # show lock (another process holds it) and catching up on the other's events.
        self.drains = 0
        self.lock_wait_seconds = 0.0
        self.catch_up_seconds = 0.0
        self.caught_up = 0  # drains that found another process had written meanwhile

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
        self._enqueue(_Queued(decide, reply, context=_caller_context()))
        return reply.future

    def submit_then(self, decide: Decision[T], answer: Callable[[tuple[T, int]], R]) -> Future[R]:
        """`submit`, the future giving answer((result, position)), computed on the writer's
        thread as it answers (an exception there fails the future)."""
        reply = ThreadReply(answer)
        self._enqueue(_Queued(decide, reply, context=_caller_context()))
        return reply.future

    def submit_async(self, decide: Decision[T]) -> asyncio.Future[tuple[T, int]]:
        """`submit` for a caller on an event loop (call it on the loop's thread): the loop is
        woken once per batch rather than once per command."""
        reply = LoopReply()
        self._enqueue(_Queued(decide, reply, context=_caller_context()))
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
            asked_at = time.monotonic()
            with self._store.show_lock(self.show_id):
                locked_at = time.monotonic()
                self.lock_wait_seconds += locked_at - asked_at
                self.drains += 1
                shared = self._refresh_cache()
                self.catch_up_seconds += time.monotonic() - locked_at
                # Another process sells this show too (it wrote since our last drain): it is
                # likely waiting now. Hand over sooner and never linger, so that its fans do
                # not wait out our whole turn.
                hold = SHARED_LOCK_HOLD_SECONDS if shared else MAX_LOCK_HOLD_SECONDS
                while batch := self._take_batch():
                    self._run(batch)
                    if time.monotonic() - locked_at >= hold:
                        break
                    if not shared:
                        self._await_more(LINGER_SECONDS)
                # Snapshots wait for a quiet moment (tidy_when_idle): a big one takes tens
                # of milliseconds, which fans of a hot show would spend waiting. Unless so many
                # events went by that a cold load would replay too many.
                if self._snapshot_debt() >= SNAPSHOT_DEBT_LIMIT * self._snapshot_every:
                    self._snapshot()
                if self._door_snapshot_debt() >= SNAPSHOT_DEBT_LIMIT * self._snapshot_every:
                    self._snapshot_door_list_aside()
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

    def _refresh_cache(self) -> bool:
        """Another process may have written since our last batch: catch up. True if it had."""
        self._door_checked = False  # checked when a batch of this drain first asks for it
        self._companions.new_drain()
        if self._inventory is None:
            return False
        # One read: the events another process stored since, applied to the cached copy
        # (nothing to read when this process wrote last).
        version = self._inventory.version
        try:
            self._inventory = self._store.catch_up(self._inventory)
        except Exception:
            self._inventory = None  # loaded afresh by the first batch
            raise
        if self._inventory.version == version:
            return False
        self.caught_up += 1
        return True

    def _load_inventory(self) -> SeatInventory:
        if self._inventory is None:
            started = time.monotonic()
            try:
                self._inventory = self._store.get(self.inventory_id, SeatInventory)
            except NotFoundError:
                raise NotFoundError("show", self.show_id) from None
            self.catch_up_seconds += time.monotonic() - started
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
        tracer = _tracer
        if tracer is None:
            return self._decide_and_commit(batch, alone, None)
        links = [Link(c) for q in batch if (c := _span_context(q.context)) is not None]
        attributes: dict[str, str | int] = {"show_id": str(self.show_id), "batch.size": len(batch)}
        with tracer.start_as_current_span(
            "show-writer.commit", context=otel_context.Context(), links=links, attributes=attributes
        ):
            return self._decide_and_commit(batch, alone, {})

    def _decide_and_commit(
        self, batch: list[_Queued[Any]], alone: bool, decided: DecisionSpans | None
    ) -> bool:
        ctx = ShowBatch(self._load_inventory(), self._store, self._load_door_list, self._companions)
        for queued in batch:
            before = ctx.begin_decision()
            try:
                if decided is None:  # not tracing: not even a context manager per command
                    queued.outcome = (True, queued.decide(ctx))
                else:
                    with self._deciding(queued, ctx, decided):
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
            with _decisions_known(decided):
                position = self._store.save(*ctx.changed())
        except VersionConflictError:
            self._forget()
            return False
        self.batches += 1
        self.commands += len(batch)
        deliver(_answer(queued, position) for queued in batch)
        return True

    @contextmanager
    def _deciding(
        self, queued: _Queued[Any], ctx: ShowBatch, decided: DecisionSpans | None
    ) -> Iterator[None]:
        """The decision's span, in its command's trace; notes it as the span of the events the
        decision made (those pending and not yet noted: earlier decisions' are)."""
        tracer = _tracer
        if tracer is None or decided is None:
            yield
            return
        batch_span = get_current_span().get_span_context()
        with tracer.start_as_current_span(
            "show-writer.decide",
            context=queued.context,
            links=[Link(batch_span)],
            attributes={"show_id": str(self.show_id)},
            record_exception=False,  # a refusal (seat taken, ...) is the command's answer
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except (DomainError, NotFoundError) as error:
                span.set_attribute("ticketblitz.refused", type(error).__name__)
                raise
            made = span.get_span_context()
            for aggregate in ctx.decided():
                for event in reversed(aggregate.pending_events):
                    key = (event.originator_id, event.originator_version)
                    if key in decided:
                        break  # this one and those before it were decided earlier
                    decided[key] = made

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

    def _snapshot_door_list_aside(self) -> None:
        """A busy show's door list: a copy of it snapshotted on another thread, so the scans
        queued meanwhile wait for the copy (milliseconds), not the snapshot (a 20,000-ticket
        door list's took 0.3-0.5 s). Its events are all in the store: a snapshot of a version
        that is committed needs no show lock."""
        door = self._door_list
        if door is None or door.pending_events or self._door_snapshot_aside:
            return
        self._door_snapshot_aside = True
        self._executor.submit(self._snapshot_copy, door.copy())

    def _snapshot_copy(self, door: DoorList) -> None:
        try:
            self._store.snapshot(door)
            self._door_snapshot_version = max(self._door_snapshot_version, door.version)
        except CommandError:
            log.warning("snapshot of %s failed; will retry later", self.door_list_id)
        finally:
            self._door_snapshot_aside = False

    def _run_alone(self, batch: list[_Queued[Any]]) -> bool:
        """Slow path after a half-applied decision: one commit per command, fresh state each."""
        for queued in batch:
            sub = [_Queued(queued.decide, queued.reply, context=queued.context)]
            for _ in range(5):
                if self._attempt(sub, alone=True):
                    break
            else:
                deliver([(queued.reply, False, ConcurrencyError("try again"))])
        return True


def _caller_context() -> otel_context.Context | None:
    """The trace context to decide a command in: the caller's, when this process traces."""
    return None if _tracer is None else otel_context.get_current()


def _span_context(context: otel_context.Context | None) -> SpanContext | None:
    if context is None:
        return None
    found = get_current_span(context).get_span_context()
    return found if found.is_valid else None


@contextmanager
def _decisions_known(decided: DecisionSpans | None) -> Iterator[None]:
    """Let the event store find each event's decide span while the batch is saved."""
    if not decided:
        yield
        return
    token = otel_context.attach(otel_context.set_value(DECISION_SPANS, decided))
    try:
        yield
    finally:
        otel_context.detach(token)


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
            "drains": sum(w.drains for w in writers),
            "caught_up": sum(w.caught_up for w in writers),
            "lock_wait_ms": round(1000 * sum(w.lock_wait_seconds for w in writers)),
            "catch_up_ms": round(1000 * sum(w.catch_up_seconds for w in writers)),
        }

    def close(self) -> None:
        self._closing.set()
        self._snapshotter.join()
        self._executor.shutdown(wait=True, cancel_futures=False)
