"""What command handlers need from the outside world, as small interfaces (adapters in infra/)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

A = TypeVar("A", bound=Aggregate)

Clock = Callable[[], datetime]


class EventStore(Protocol):
    def get(self, aggregate_id: UUID, kind: type[A]) -> A:
        """Load an aggregate; raise NotFoundError when the stream does not exist."""
        ...

    def exists(self, aggregate_id: UUID) -> bool: ...

    def version_of(self, aggregate_id: UUID) -> int | None:
        """The stream's last version, without loading it."""
        ...

    def save(self, *aggregates: Aggregate) -> int:
        """Append the aggregates' pending events in one transaction; return the global
        position of the last one (or the head position when nothing was pending).
        Raise VersionConflictError when an expected version is stale."""
        ...

    def head_position(self) -> int: ...

    def show_lock(self, show_id: UUID) -> AbstractContextManager[None]:
        """Hold the cross-process lock that makes this process the show's only writer."""
        ...


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool: ...
