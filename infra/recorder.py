"""The library's PostgreSQL recorder, made safe for large group commits.

eventsourcing 9.5.6 sends an insert in psycopg's pipeline mode. Measured here (psycopg 3.3.9,
unix socket), a pipelined insert of about 1 MB of events never returned: the client waited in
`pipeline.sync()` while the server waited for the client. Large appends (big group-commit
batches) therefore go without the pipeline: same statements, same table lock and NOTIFY, same
single transaction, a few more round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder

PIPELINE_LIMIT_BYTES = 256 * 1024


class TicketBlitzRecorder(PostgresApplicationRecorder):
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if sum(len(e.state) for e in stored_events) <= PIPELINE_LIMIT_BYTES:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        return self._insert_without_pipeline(stored_events, **kwargs)

    def _insert_without_pipeline(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction():
            with conn.cursor() as curs:
                self._insert_events(curs, stored_events, **kwargs)
            with conn.cursor() as curs:
                self._insert_stored_events(curs, stored_events, **kwargs)
                return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
