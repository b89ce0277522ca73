"""The library's PostgreSQL recorder, made safe and cheaper for large group commits.

Four changes to eventsourcing 9.5.6's application recorder, same table lock, NOTIFY, RETURNING
and single transaction:

- Rows go as four plain arrays (`unnest(uuid[], bigint[], text[], bytea[])`, sent in binary)
  instead of one array of the library's composite type, which psycopg dumps as text in Python:
  measured here, half the client CPU per appended event (docs/PERFORMANCE.md, `append`).
- A pipelined insert of about 1 MB of events never returned (psycopg 3.3.9, unix socket: the
  client waited in `pipeline.sync()` while the server waited for the client). Large appends
  (big group-commit batches) therefore go without the pipeline, a few more round trips.
- Each event's trace context, when the caller passes `traceparents=[...]` (one per event, or
  None), goes in the nullable `traceparent` column beside it (infra/tracing.py); without it the
  insert is the same as before.
- Two attempts per call instead of the library's ten: each attempt may wait for the pool's
  timeout, so with the database down a request heard about it only after about 50 s. A dropped
  connection needs one more attempt (the pool replaces it, infra/pool_revival.py); a longer
  outage is a 503 for the client to retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor, InterfaceError, OperationalError
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

PIPELINE_LIMIT_BYTES = 256 * 1024
TRACEPARENTS = "traceparents"  # the keyword argument of the events' trace contexts
ATTEMPTS = 2
_retried = retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=0.2)
_Library = PostgresApplicationRecorder  # its retried methods keep the plain one in __wrapped__


class TicketBlitzRecorder(PostgresApplicationRecorder):
    select_events = _retried(_Library.select_events.__wrapped__)
    select_notifications = _retried(_Library.select_notifications.__wrapped__)
    max_notification_id = _retried(_Library.max_notification_id.__wrapped__)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._insert_arrays_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
            id_type=Identifier(self.datastore.originator_id_type),
        )
        self._insert_traced_arrays_statement = SQL(
            "INSERT INTO {schema}.{table} "
            "(originator_id, originator_version, topic, state, traceparent) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[], "
            "%b::text[]) RETURNING notification_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
            id_type=Identifier(self.datastore.originator_id_type),
        )

    @_retried
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if sum(len(e.state) for e in stored_events) <= PIPELINE_LIMIT_BYTES:
            ids: Sequence[int] | None = _Library.insert_events.__wrapped__(
                self, stored_events, **kwargs
            )
            return ids
        return self._insert_without_pipeline(stored_events, **kwargs)

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        traceparents: Sequence[str | None] | None = None,
        **_: Any,
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        arrays: tuple[list[Any], ...] = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        if traceparents is None:
            curs.execute(self._insert_arrays_statement, arrays)
        else:
            curs.execute(self._insert_traced_arrays_statement, (*arrays, list(traceparents)))

    def _insert_without_pipeline(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction():
            with conn.cursor() as curs:
                self._insert_events(curs, stored_events, **kwargs)
            with conn.cursor() as curs:
                self._insert_stored_events(curs, stored_events, **kwargs)
                return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
