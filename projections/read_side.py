"""The read side's parts, as the composition root builds them: the read models (through a pool
of their own), their positions, the cache of hot reads, and the runners once started."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import psycopg
from psycopg_pool import ConnectionPool

from commands.ports import RevivingEventLog
from infra.event_store import PostgresEventStore
from infra.log_follower import FollowerFailure, follower_failures
from infra.read_cache import ReadCache
from infra.settings import Settings
from projections.generations import ensure_read_side
from projections.positions import PositionWatch, ProjectionStatus, projection_statuses
from projections.queries import ReadModels
from projections.registry import PROJECTIONS, projection_kinds
from projections.runner import ProjectionRunners


class Companion(Protocol):
    """Something that follows beside the projection runners (the recommender's consumer)."""

    def stop(self) -> None: ...


# Starts a companion on the runners' event store; the composition root supplies it, so the
# read models know nothing of what runs beside them.
CompanionStarter = Callable[[PostgresEventStore, Settings], Companion]


class ReadSide:
    def __init__(
        self,
        settings: Settings,
        store: RevivingEventLog,
        cache: ReadCache,
        companion: CompanionStarter | None = None,
    ) -> None:
        if settings.database_url is None:
            raise ValueError("the read side needs a database URL")
        self.settings = settings
        self.store = store
        self.cache = cache
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=settings.read_pool_size,
            kwargs={"autocommit": True},
            open=True,
            check=store.pool_revival().check,
            timeout=5.0,  # a request waits this long for a connection, then gets a 503
        )
        store.pool_revival().add(self._pool)
        self.models = ReadModels(self._pool)
        self.positions = PositionWatch(self.models.positions)
        self.runners: ProjectionRunners | None = None
        self._start_companion = companion
        self.companion: Companion | None = None  # e.g. the recommender, beside the runners
        self._runner_store: PostgresEventStore | None = None

    def setup(self) -> None:
        """Create the read schema and empty read models where missing (idempotent)."""
        with self._pool.connection() as conn:
            ensure_read_side(conn, projection_kinds())

    def start_runners(self, rebuild_stale: bool = False) -> ProjectionRunners:
        """Start following the log (on connections of their own: they hold some for long);
        with `rebuild_stale`, read models built by another version are rebuilt first."""
        if self.runners is None:
            assert self.settings.database_url is not None
            self._runner_store = PostgresEventStore(
                self.settings.database_url, pool_size=len(PROJECTIONS) + 3
            )
            self.runners = ProjectionRunners(
                self._runner_store,
                page_size=self.settings.projection_page_size,
                poll_interval=self.settings.projection_poll_seconds,
                rebuild_stale=rebuild_stale,
            ).start()
            if self._start_companion is not None:
                self.companion = self._start_companion(self._runner_store, self.settings)
        return self.runners

    def statuses(self) -> tuple[int, list[ProjectionStatus]]:
        with self._pool.connection() as conn:
            return projection_statuses(self.store, conn)

    def follower_failures(self) -> dict[str, FollowerFailure]:
        """Every log follower stopped on an event now (read models and workers alike)."""
        with self._pool.connection() as conn:
            return follower_failures(conn)

    def close(self) -> None:
        if self.companion is not None:
            self.companion.stop()
            self.companion = None
        if self.runners is not None:
            self.runners.stop()
            self.runners = None
        if self._runner_store is not None:
            self._runner_store.close()
            self._runner_store = None
        self._pool.close()
