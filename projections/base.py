"""What every projection shares: generation naming, table setup, explicit dispatch by event
type over a page, and a page reader that decodes only the events a projection handles.

A projection is a `PageHandler` (infra/log_follower.py): the follower calls `handle` inside the
page's transaction, together with the update of its position, so a page is applied exactly once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from eventsourcing.domain import Aggregate
from eventsourcing.utils import TopicError, get_topic
from psycopg import sql

from commands.ports import EventLog
from infra.decoding import FOLLOWER_CACHED_UUIDS, Decoder, read_rows
from infra.log_follower import LoggedEvent
from projections.tables import PageRows, Table

log = logging.getLogger(__name__)

READ_SCHEMA = "read"

# States of a generation of a read model (projections/generations.py).
ACTIVE = "active"
BUILDING = "building"
RETIRED = "retired"

Handler = Callable[[Any, "Page", Any], None]


def event_type(aggregate: type[Aggregate], name: str) -> type:
    """The event class that `@event(name)` nested in an aggregate (fails at import if renamed)."""
    found = getattr(aggregate, name)
    if not isinstance(found, type) or not issubclass(found, Aggregate.Event):
        raise TypeError(f"{aggregate.__name__}.{name} is not an event class")
    return found


def follower_name(projection: str, generation: int) -> str:
    return f"{projection}@g{generation}"


def schema_name(projection: str, generation: int) -> str:
    return f"read_{projection}_g{generation}"


class GenerationRetiredError(Exception):
    """This generation of a read model was replaced (and dropped) by a rebuild."""


class Page:
    """One page's pending changes, per table; written at the end of the page."""

    def __init__(self, tables: Sequence[Table]) -> None:
        self._rows = {table.name: PageRows(table) for table in tables}

    def __getitem__(self, table: Table) -> PageRows:
        return self._rows[table.name]

    def flush(self, conn: psycopg.Connection[Any], schema: str) -> None:
        for rows in self._rows.values():
            rows.flush(conn, schema)


class Projection:
    """A read model in one generation: its tables live in the schema of that generation, and
    `read.<view>` views point at the active generation's tables (projections/generations.py)."""

    kind: ClassVar[str]
    tables: ClassVar[tuple[Table, ...]]
    views: ClassVar[Mapping[str, str]]  # view in the read schema -> table of this projection
    handlers: ClassVar[Mapping[type, Handler]]

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.name = follower_name(self.kind, generation)
        self.schema = schema_name(self.kind, generation)

    @classmethod
    def fingerprint(cls) -> str:
        """Identifies the shape of this read model (tables, views, events handled): when the
        code changes it, the stored generations are stale and need a rebuild."""
        shape = [repr(table) for table in cls.tables]
        shape += sorted(f"{view}={table}" for view, table in cls.views.items())
        shape += sorted(cls.topics())
        return hashlib.blake2b("\n".join(shape).encode(), digest_size=8).hexdigest()

    @classmethod
    def topics(cls) -> frozenset[str]:
        return frozenset(get_topic(event_type) for event_type in cls.handlers)

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        """Create this generation's tables; refuse if a rebuild has retired it meanwhile."""
        row = conn.execute(
            "SELECT state FROM read.generations WHERE projection = %s AND generation = %s "
            "FOR SHARE",
            (self.kind, self.generation),
        ).fetchone()
        if row is None or row[0] == RETIRED:
            raise GenerationRetiredError(self.name)
        self.create_tables(conn)

    def create_tables(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        for table in self.tables:
            for statement in table.ddl(self.schema):
                conn.execute(statement)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        changes = Page(self.tables)
        self.prepare(conn, changes, page)
        handlers = self.handlers
        for logged in page:
            handler = handlers.get(type(logged.event))
            if handler is not None:
                handler(self, changes, logged.event)
        changes.flush(conn, self.schema)

    def prepare(
        self, conn: psycopg.Connection[Any], changes: Page, page: Sequence[LoggedEvent]
    ) -> None:
        """Load, in bulk, the rows of earlier pages that this page's events will need."""


@dataclass(frozen=True)
class Skipped:
    """Stands for an event no projection of the reader handles (or whose class this code does
    not know), so that the follower's position still moves past it."""

    timestamp: datetime | None


class EventReader:
    """A `PageReader` that decodes only the events of the given topics.

    Decoding dominates the cost of following the log, so events nobody here handles (accounts,
    other services' events, topics this version of the code cannot even resolve) are not
    decoded; only the page's last event is kept, as `Skipped`, so that the position advances.
    """

    def __init__(self, topics: Collection[str]) -> None:
        self.topics = frozenset(topics)
        self._decoder: Decoder | None = None
        self._mapper: object = None

    def __call__(self, store: EventLog, after: int, limit: int) -> list[LoggedEvent]:
        with store.connection() as conn:
            rows = read_rows(conn, after, limit)
        if not rows:
            return []
        decode = self._decoder_for(store).event
        topics = self.topics
        page = [LoggedEvent(row[0], decode(row)) for row in rows if row[3] in topics]
        last = rows[-1]
        if not page or page[-1].position != last[0]:
            try:
                stamp: datetime | None = decode(last).timestamp
            except (TopicError, ValueError, KeyError) as error:
                log.warning(
                    "event %s (%s) cannot be decoded: skipped (%s)", last[0], last[3], error
                )
                stamp = None
            page.append(LoggedEvent(last[0], Skipped(stamp)))
        return page

    def _decoder_for(self, store: EventLog) -> Decoder:
        mapper = store.mapper()
        if self._decoder is None or self._mapper is not mapper:
            self._decoder = Decoder(mapper, max_cached_uuids=FOLLOWER_CACHED_UUIDS)
            self._mapper = mapper
        return self._decoder
