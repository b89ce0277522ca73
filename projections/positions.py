"""Where the read models are in the log: positions, lag, and waiting for a position
(read-your-writes)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from eventsourcing.utils import TopicError

from commands.ports import EventLog
from infra.log_follower import dead_letter_counts, follower_failures
from projections.base import ACTIVE, BUILDING, follower_name
from projections.registry import PROJECTIONS


@dataclass(frozen=True)
class GenerationPosition:
    projection: str
    generation: int
    state: str
    position: int
    fingerprint: str | None = None


def generation_positions(conn: psycopg.Connection[Any]) -> list[GenerationPosition]:
    """The active and building generations of every projection, with their positions."""
    rows = conn.execute(
        "SELECT g.projection, g.generation, g.state, coalesce(f.position, 0), g.fingerprint "
        "FROM read.generations g LEFT JOIN follower_positions f ON f.name = g.follower "
        "WHERE g.state IN (%s, %s) ORDER BY g.projection, g.generation",
        (ACTIVE, BUILDING),
    ).fetchall()
    return [GenerationPosition(p, int(g), s, int(pos), f) for p, g, s, pos, f in rows]


def active_positions(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {p.projection: p.position for p in generation_positions(conn) if p.state == ACTIVE}


def lowest(positions: Mapping[str, int], names: Collection[str]) -> int:
    """How far all of these read models are (0 for one that does not exist yet)."""
    return min((positions.get(name, 0) for name in names), default=0)


@dataclass(frozen=True)
class ProjectionStatus:
    projection: str
    generation: int
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    rebuilding_generation: int | None
    rebuilding_position: int | None
    stale: bool  # built by another version of the projection: rebuild it
    failing: bool = False  # stopped on an event it cannot apply (infra/log_follower.py)
    failed_position: int | None = None
    error: str | None = None
    failures: int = 0  # attempts on that event so far
    skips: bool = False  # whether it will skip that event after its attempts
    dead_letters: int = 0  # events it skipped, ever (this generation)


def projection_statuses(
    store: EventLog, conn: psycopg.Connection[Any], now: datetime | None = None
) -> tuple[int, list[ProjectionStatus]]:
    """The store's head and, per projection, its position and lag: in events, and in seconds
    as the age of the oldest event it has not applied yet (0 when it is caught up)."""
    head = store.head_position()
    now = now or datetime.now(UTC)
    positions = generation_positions(conn)
    building = {p.projection: p for p in positions if p.state == BUILDING}
    failures = follower_failures(conn)
    skipped = dead_letter_counts(conn)
    waiting_since: dict[int, datetime | None] = {}
    statuses = []
    for p in positions:
        if p.state != ACTIVE:
            continue
        lag_seconds = 0.0
        if p.position < head:
            if p.position not in waiting_since:
                waiting_since[p.position] = _time_of_next_event(store, p.position)
            since = waiting_since[p.position]
            lag_seconds = 0.0 if since is None else max(0.0, (now - since).total_seconds())
        rebuild = building.get(p.projection)
        name = follower_name(p.projection, p.generation)
        failure = failures.get(name)
        statuses.append(
            ProjectionStatus(
                projection=p.projection,
                generation=p.generation,
                position=p.position,
                head=head,
                lag_events=max(0, head - p.position),
                lag_seconds=lag_seconds,
                rebuilding_generation=None if rebuild is None else rebuild.generation,
                rebuilding_position=None if rebuild is None else rebuild.position,
                stale=p.projection in PROJECTIONS
                and p.fingerprint != PROJECTIONS[p.projection].fingerprint(),
                failing=failure is not None,
                failed_position=None if failure is None else failure.position,
                error=None if failure is None else failure.error,
                failures=0 if failure is None else failure.attempts,
                skips=failure is not None and failure.skips,
                dead_letters=skipped.get(name, 0),
            )
        )
    return head, statuses


def _time_of_next_event(store: EventLog, position: int) -> datetime | None:
    try:
        found = store.events_after(position, 1)
    except (TopicError, ValueError):
        return None
    if not found:
        return None
    stamp: datetime = found[0][1].timestamp  # type: ignore[attr-defined]
    return stamp


class PositionWatch:
    """The active read models' positions, shared by concurrent requests: one query serves
    every caller that asks within `max_age` seconds of it. A query that fails fails every
    caller that was waiting for it too: while the database is unreachable, concurrent callers
    hear so after one timeout, not one timeout after another."""

    def __init__(
        self, read_positions: Callable[[], dict[str, int]], max_age: float = 0.005
    ) -> None:
        self._read = read_positions
        self._max_age = max_age
        self._lock = threading.Lock()
        self._positions: dict[str, int] = {}
        self._read_at = float("-inf")
        self._failure: Exception | None = None
        self._failed_at = float("-inf")

    def current(self) -> dict[str, int]:
        asked = time.monotonic()
        with self._lock:
            if self._failure is not None and self._failed_at >= asked:
                raise self._failure.with_traceback(None)  # the query it waited for failed
            if self._read_at < asked - self._max_age:
                try:
                    self._positions = self._read()
                except Exception as error:
                    self._failure, self._failed_at = error, time.monotonic()
                    raise
                self._read_at = time.monotonic()
            return self._positions

    def wait(self, names: Collection[str], position: int, timeout: float) -> int | None:
        """Block until all `names` have passed `position`; their lowest position, or None if
        they did not within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            reached = lowest(self.current(), names)
            if reached >= position:
                return reached
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    async def wait_async(
        self, names: Collection[str], position: int | None, timeout: float
    ) -> tuple[int, bool]:
        """For async endpoints: (lowest position, whether it has passed `position`)."""
        deadline = time.monotonic() + timeout
        while True:
            reached = lowest(await asyncio.to_thread(self.current), names)
            if position is None or reached >= position:
                return reached, True
            if time.monotonic() >= deadline:
                return reached, False
            await asyncio.sleep(0.005)
