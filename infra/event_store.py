"""The PostgreSQL event store: the eventsourcing library's recorder plus the show locks, and
the transcodings that let snapshots carry the records of an aggregate's state."""

from __future__ import annotations

import hashlib
import heapq
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar, cast
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, DomainEventProtocol, Snapshot
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Mapper,
    PersistenceError,
    StoredEvent,
    Transcoding,
)
from eventsourcing.postgres import PostgresAggregateRecorder
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Composed, Identifier, Literal
from psycopg_pool import ConnectionPool

from commands.errors import NotFoundError, StoreUnavailableError, VersionConflictError
from domain.door import Ticket
from domain.inventory import Claim, GeneralSection, Row
from infra.personal_data import KeyRing, SealingMapper, key_ring_for, register_personal_data
from infra.pool_revival import PoolReviver
from infra.recorder import PIPELINE_LIMIT_BYTES, TRACEPARENTS, TicketBlitzRecorder
from infra.tracing import event_traceparents

A = TypeVar("A", bound=Aggregate)

EVENTS_TABLE = "ticketblitz_events"
_CATCH_UP = (
    f"SELECT originator_version, topic, state FROM {EVENTS_TABLE} "
    "WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version"
)
TRACEPARENT_COLUMN = "traceparent"  # an event's trace context: beside it, never in its state
APPEND_FUNCTION = "ticketblitz_append_events"
FEW_EVENTS = 32  # untraced appends of up to this many events pass one parameter per value
_CREATE_FUNCTION_LOCK = 0x7469636B6574  # serializes CREATE OR REPLACE FUNCTION across processes


class RecordAsList(Transcoding):
    """A record of an aggregate's state (a dataclass) as a JSON array of its fields in order;
    snapshots carry them (SeatInventory's rows, claims and GA sections). An array, not an
    object: a big show's snapshot has tens of thousands of claims, and it is written while
    the show's commands wait. The order is the stored format: a record that changes its
    fields other than by appending one with a default needs a new transcoding name."""

    def __init__(self, record: type[Any], name: str) -> None:
        names = [f.name for f in fields(record)]
        if len(names) < 2:  # attrgetter of one name gives the value, not a tuple
            raise ValueError(f"{record.__name__}: a record of one field is no array")
        self.type = record
        self.name = name
        self._fields = attrgetter(*names)

    def encode(self, obj: Any) -> Any:
        return self._fields(obj)  # a tuple: JSON encodes it as an array

    def decode(self, data: list[Any]) -> Any:
        return self.type(*data)


STATE_RECORDS = (
    RecordAsList(Row, "inventory_row"),
    RecordAsList(Claim, "inventory_claim"),
    RecordAsList(GeneralSection, "inventory_general_section"),
    RecordAsList(Ticket, "door_ticket"),  # DoorList's tickets
)


class TicketBlitz(Application[UUID]):
    """The event-sourced application: one store for shows, inventories, bookings, accounts."""

    name = "TicketBlitz"
    keys: KeyRing

    def construct_mapper(self) -> Mapper[UUID]:
        # Personal data is sealed with per-person keys kept beside the log (docs/PRIVACY.md).
        self.keys = key_ring_for(self.env)
        transcoder = self.construct_transcoder()
        return self.factory.mapper(transcoder=transcoder, mapper_class=SealingMapper)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for transcoding in STATE_RECORDS:
            transcoder.register(transcoding)
        register_personal_data(transcoder, self.keys)

    def close(self) -> None:
        super().close()
        self.keys.close()


def application_env(database_url: str, pool_size: int) -> dict[str, str]:
    """Translate a libpq URL into the library's POSTGRES_* settings."""
    params = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_CONNECT_TIMEOUT": "3",  # also how long a call waits for a pooled connection
        "POSTGRES_PRE_PING": "y",
        "CREATE_TABLE": "y",
        "APPLICATION_RECORDER_TOPIC": "infra.recorder:TicketBlitzRecorder",
        "IS_SNAPSHOTTING_ENABLED": "y",
    }


def advisory_key(show_id: UUID) -> int:
    """A signed 64-bit lock key for a show (pg_advisory_lock takes a bigint)."""
    digest = hashlib.blake2b(b"show:" + show_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresEventStore:
    """Implements commands.ports.EventStore (and EventLog, for the log's followers) over the
    library's PostgreSQL recorder."""

    def __init__(self, database_url: str, pool_size: int = 8) -> None:
        self.app = TicketBlitz(env=application_env(database_url, pool_size))
        self.reviver = PoolReviver(database_url)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            database_url,
            min_size=1,
            max_size=max(2, pool_size * 2),
            kwargs={"autocommit": True},
            open=True,
            check=self.reviver.check,
        )
        self.reviver.add(self._pool)
        recorder = self.app.recorder
        assert isinstance(recorder, TicketBlitzRecorder)  # APPLICATION_RECORDER_TOPIC
        self.reviver.add(recorder.datastore.pool)  # snapshots share this datastore
        self._held = threading.local()  # the connection of the show lock this thread holds
        self._append, self._append_traced = self._create_append_function(recorder)
        snapshots = self.app.snapshots
        assert snapshots is not None and isinstance(snapshots.recorder, PostgresAggregateRecorder)
        self._insert_snapshot = SQL(
            "INSERT INTO {0}.{1} (originator_id, originator_version, topic, state) "
            "VALUES (%b, %b, %b, %b)"
        ).format(
            Identifier(snapshots.recorder.datastore.schema),
            Identifier(snapshots.recorder.events_table_name),
        )

    def _create_append_function(self, recorder: TicketBlitzRecorder) -> tuple[Composed, Composed]:
        """The recorder's append (same table lock, NOTIFY, insert) as one server-side function:
        a save on the connection that holds the show lock is then one round trip, instead of a
        pooled connection's ping, the pipelined statements and the commit (docs/PERFORMANCE.md,
        check-in). Returns the calls without and with the events' trace contexts.

        Also adds the events' nullable `traceparent` column to a table made before it existed
        (docs/OBSERVABILITY.md). The function has two overloads: with the contexts (5 arrays)
        and without (4 arrays, as before), which processes of the previous release still call
        during a rolling upgrade."""
        datastore = recorder.datastore
        table = SQL("{0}.{1}").format(
            Identifier(datastore.schema), Identifier(recorder.events_table_name)
        )
        function = SQL("{0}.{1}").format(Identifier(datastore.schema), Identifier(APPEND_FUNCTION))
        create = SQL(
            "CREATE OR REPLACE FUNCTION {function}("
            "ids {id_type}[], versions bigint[], topics text[], states bytea[]{traced}) "
            "RETURNS bigint LANGUAGE plpgsql AS $body$ "
            "DECLARE last bigint; "
            "BEGIN "
            "SET LOCAL lock_timeout = {timeout}; "
            "LOCK TABLE {table} IN EXCLUSIVE MODE; "
            "NOTIFY {channel}; "
            "WITH added AS ("
            "INSERT INTO {table} (originator_id, originator_version, topic, state{column}) "
            "SELECT * FROM unnest(ids, versions, topics, states{array}) "
            "RETURNING notification_id) "
            "SELECT max(notification_id) INTO last FROM added; "
            "RETURN last; "
            "END $body$"
        )
        names = {
            "function": function,
            "id_type": Identifier(datastore.originator_id_type),
            "timeout": Literal(f"{datastore.lock_timeout}s"),
            "table": table,
            "channel": Identifier(recorder.channel_name),
        }
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_FUNCTION_LOCK,))
            missing = conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attname = %s AND NOT attisdropped)",
                (table.as_string(conn), TRACEPARENT_COLUMN),
            ).fetchone()
            # Looked up first: ALTER takes the table's exclusive lock even when there is nothing
            # to add, and would make every start wait for the log's readers.
            if missing and missing[0]:
                conn.execute(
                    SQL("ALTER TABLE {0} ADD COLUMN IF NOT EXISTS {1} text").format(
                        table, Identifier(TRACEPARENT_COLUMN)
                    )
                )
            conn.execute(create.format(traced=SQL(""), column=SQL(""), array=SQL(""), **names))
            conn.execute(
                create.format(
                    traced=SQL(", traceparents text[]"),
                    column=SQL(", {0}").format(Identifier(TRACEPARENT_COLUMN)),
                    array=SQL(", traceparents"),
                    **names,
                )
            )
        self._append_function = function
        self._append_id_type = names["id_type"]
        self._append_by_count: dict[int, bytes] = {}
        return (
            SQL("SELECT {0}(%b, %b, %b, %b)").format(function),
            SQL("SELECT {0}(%b, %b, %b, %b, %b)").format(function),
        )

    def _append_statement(self, count: int, conn: psycopg.Connection[Any]) -> bytes:
        """For a few events, the arrays built by the server from one parameter per value:
        psycopg dumps scalars in C, lists in Python (about 25 vs 5 us for 4 events). As bytes:
        psycopg would compose it again at each call (about 14 us)."""
        found = self._append_by_count.get(count)
        if found is None:
            values = SQL(", ").join([SQL("%b")] * count)
            statement = SQL(
                "SELECT {0}(ARRAY[{1}]::{2}[], ARRAY[{1}]::bigint[], ARRAY[{1}]::text[], "
                "ARRAY[{1}]::bytea[])"
            ).format(self._append_function, values, self._append_id_type)
            found = self._append_by_count[count] = statement.as_bytes(conn)
        return found

    def reserve_connections(self, extra: int) -> None:
        """Let `connection()` open `extra` more connections: a process whose long-running
        followers and task executors each hold one (the workers) must leave the show's writer
        enough for its lock, or the writer waits for one and every command times out."""
        self._pool.resize(self._pool.min_size, self._pool.max_size + extra)

    def close(self) -> None:
        self.reviver.close()
        self._pool.close()
        self.app.close()

    def _unavailable(self, error: Exception) -> StoreUnavailableError:
        self.reviver.outage_seen()
        return StoreUnavailableError(str(error))

    def get(self, aggregate_id: UUID, kind: type[A]) -> A:
        try:
            aggregate: Aggregate = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(kind.__name__, aggregate_id) from None
        except PersistenceError as error:
            raise self._unavailable(error) from error
        if not isinstance(aggregate, kind):
            raise NotFoundError(kind.__name__, aggregate_id)
        return aggregate

    def get_as_of(self, aggregate_id: UUID, version: int) -> Aggregate:
        aggregate: Aggregate = self.app.repository.get(aggregate_id, version=version)
        return aggregate

    def history(self, aggregate_id: UUID) -> Iterator[DomainEventProtocol[UUID]]:
        return self.app.events.get(aggregate_id)

    def version_of(self, aggregate_id: UUID) -> int | None:
        rows = self._query(
            f"SELECT max(originator_version) FROM {EVENTS_TABLE} WHERE originator_id = %s",
            (aggregate_id,),
        )
        return None if rows[0][0] is None else int(rows[0][0])

    def exists(self, aggregate_id: UUID) -> bool:
        return self.version_of(aggregate_id) is not None

    def save(self, *aggregates: Aggregate) -> int:
        # In the order they were decided, across aggregates (each aggregate's own order kept):
        # a batch of the show's writer may confirm a booking, then cancel the show, and the log
        # must not tell it the other way round.
        per_aggregate = [aggregate.collect_events() for aggregate in aggregates]
        events = list(heapq.merge(*per_aggregate, key=_decided_at))
        if not events:
            return self.head_position()
        traceparents = event_traceparents(events)  # None unless tracing
        held: psycopg.Connection[Any] | None = getattr(self._held, "conn", None)
        if held is not None:
            stored = [self.app.mapper.to_stored_event(e) for e in events]
            if sum(len(e.state) for e in stored) <= PIPELINE_LIMIT_BYTES:
                return self._append_on(held, stored, traceparents)
        traced = {} if traceparents is None else {TRACEPARENTS: traceparents}
        try:
            # The application's `save` would only add runtime Protocol checks per aggregate
            # (about 10 us each) and hooks this application does not use.
            recordings = self.app.events.put(events, **traced)
        except IntegrityError as error:
            raise VersionConflictError(str(error)) from error
        except PersistenceError as error:
            raise self._unavailable(error) from error
        return max(r.notification.id for r in recordings)

    def _append_on(
        self,
        conn: psycopg.Connection[Any],
        stored: list[StoredEvent],
        traceparents: Sequence[str | None] | None = None,
    ) -> int:
        """One statement on the show lock's (autocommit) connection: its own transaction."""
        arrays: tuple[list[Any], ...] = (
            [e.originator_id for e in stored],
            [e.originator_version for e in stored],
            [e.topic for e in stored],
            [e.state for e in stored],
        )
        try:
            if traceparents is None and len(stored) <= FEW_EVENTS:
                values = [v for array in arrays for v in array]
                row = conn.execute(self._append_statement(len(stored), conn), values).fetchone()
            elif traceparents is None:
                row = conn.execute(self._append, arrays).fetchone()
            else:
                traced = (*arrays, list(traceparents))
                row = conn.execute(self._append_traced, traced).fetchone()
        except psycopg.errors.UniqueViolation as error:
            raise VersionConflictError(str(error)) from error
        except psycopg.Error as error:  # no retry elsewhere: the show lock went with it
            raise self._unavailable(error) from error
        assert row is not None and row[0] is not None
        return int(row[0])

    def snapshot(self, aggregate: Aggregate) -> None:
        """From the in-memory state (just saved), not a replay: cheap for a big inventory.
        Written with binary parameters: the library's recorder sends a snapshot as its composite
        type, dumped as text in Python (a big door list's 6 MB took about a second)."""
        assert self.app.snapshots is not None  # IS_SNAPSHOTTING_ENABLED is set above
        stored = self.app.mapper.to_stored_event(Snapshot.take(aggregate))
        params = (stored.originator_id, stored.originator_version, stored.topic, stored.state)
        held: psycopg.Connection[Any] | None = getattr(self._held, "conn", None)
        try:
            if held is not None:
                held.execute(self._insert_snapshot, params)
            else:
                with self._pool.connection() as conn:
                    conn.execute(self._insert_snapshot, params)
        except psycopg.errors.UniqueViolation:
            return  # this version's snapshot is there already
        except psycopg.Error as error:
            raise self._unavailable(error) from error

    def head_position(self) -> int:
        try:
            return self.app.recorder.max_notification_id() or 0
        except PersistenceError as error:
            raise self._unavailable(error) from error

    def events_after(
        self, position: int, limit: int
    ) -> list[tuple[int, DomainEventProtocol[UUID]]]:
        notifications = self.app.recorder.select_notifications(
            start=position, limit=limit, inclusive_of_start=False
        )
        to_event = self.app.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in notifications]

    def mapper(self) -> Mapper[UUID]:
        return self.app.mapper

    def append_channel(self) -> str:
        channel: str = getattr(self.app.recorder, "channel_name", EVENTS_TABLE)
        return channel

    def pool_revival(self) -> PoolReviver:
        return self.reviver

    @contextmanager
    def show_lock(self, show_id: UUID) -> Iterator[None]:
        """A session advisory lock: if this process dies, PostgreSQL releases it."""
        key = advisory_key(show_id)
        try:
            with self._pool.connection() as conn:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                outer = getattr(self._held, "conn", None)
                self._held.conn = conn  # this thread's saves go through it meanwhile
                try:
                    yield
                finally:
                    self._held.conn = outer
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg.OperationalError as error:
            raise self._unavailable(error) from error

    def catch_up(self, aggregate: A) -> A:
        """The events stored after the aggregate's version, applied to it: after another
        process held the show lock, its writer reads what it missed in one query instead of
        reloading the snapshot and replaying everything since (snapshots wait while a show is
        busy, so that replay grew with the sale: 100+ ms per handoff, measured)."""
        held: psycopg.Connection[Any] | None = getattr(self._held, "conn", None)
        if held is None:
            try:
                events = list(self.app.events.get(aggregate.id, gt=aggregate.version))
            except PersistenceError as error:
                raise self._unavailable(error) from error
        else:  # on the show lock's connection: no second connection while the lock is held
            try:
                rows = held.execute(_CATCH_UP, (aggregate.id, aggregate.version)).fetchall()
            except psycopg.Error as error:
                raise self._unavailable(error) from error
            to_event = self.app.mapper.to_domain_event
            events = [
                to_event(StoredEvent(aggregate.id, version, topic, bytes(state)))
                for version, topic, state in rows
            ]
        for event in events:
            mutated = cast(Aggregate.Event, event).mutate(aggregate)
            assert mutated is not None  # events after the first never discard it
            aggregate = mutated
        return aggregate

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled autocommit connection (use `conn.transaction()` for atomic work)."""
        return self._pool.connection()

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        held: psycopg.Connection[Any] | None = getattr(self._held, "conn", None)
        try:
            if held is not None:
                # A show writer's drain (a version check) on its lock's connection: with as
                # many drains as the pool has connections, each holding its lock's, a second
                # one from the pool waited for the pool's timeout (20 shows on sale at once,
                # measured: 10 s stalls and 503s).
                return held.execute(sql, params).fetchall()  # type: ignore[arg-type]
            with self._pool.connection() as conn:
                return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
        except psycopg.OperationalError as error:
            raise self._unavailable(error) from error


def _decided_at(event: DomainEventProtocol[Any]) -> datetime:
    decided: datetime = cast(Aggregate.Event, event).timestamp
    return decided
