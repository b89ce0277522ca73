"""The recommender's read model, fed by the integration events on Kafka: its tables, and how
a batch of records changes them.

`recommender/runner.py` consumes `{prefix}.shows.v1` and `{prefix}.bookings.v1`
(docs/INTEGRATION_EVENTS.md), parses each record (records.py) and hands each batch to
`RecommenderProjection`, which applies it in one PostgreSQL transaction together with the
consumed offsets (offsets.py). The tables (schema `rec`; a rebuild fills `rec_rebuild`, then
swaps it in):

- `show_vectors`: one row per show (title, description, category, venue, start, whether on
  sale), its embedding (pgvector, HNSW index, cosine) and the `model` that produced it;
- `pending_embeddings`: shows waiting for their (re-)embedding, with a backoff (survival mode:
  if the embedder fails, they stay there, and the batch that queued them still commits;
  embedding_queue.py);
- `bookings`, `customer_shows`, `show_sales`: each booking's last known state, who holds a
  confirmed booking for which show, and how many confirmed bookings each show has;
- `consumer_offsets`: the next offset of each topic-partition, and a digest of the record
  before it (to recognise a topic whose history changed under us, see runner.py);
- `skipped_records`: malformed records, logged and skipped;
- `meta`: the layout of these tables. Tables of another layout are dropped and rebuilt from
  the topics (`ensure_schema`).

Idempotent: integration events carry the state of their show or booking *after* the event and
its position in the global log, so a row only moves forward (an event no newer than the row's
`position` changes nothing). A record read twice (a redelivery, a re-fed topic, a rebuild over
a running consumer) is harmless; a batch keeps only each show's and booking's newest event.

Read-your-writes: the `recommender` row of `follower_positions` (watermark.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from domain.show import ON_SALE
from infra.event_store import PostgresEventStore
from infra.log_follower import POSITIONS_DDL
from recommender.embedder import DIMENSION, ShowText
from recommender.embedding_queue import shows_per_model
from recommender.records import BookingChange, Change, Malformed, ShowChange, newest

log = logging.getLogger(__name__)

FOLLOWER = "recommender"  # its row in follower_positions: the read-your-writes watermark
SCHEMA = "rec"
LAYOUT = "kafka-1"  # change it with the tables: older tables are then dropped and rebuilt


def ddl(schema: str) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.show_vectors (
    show_id uuid PRIMARY KEY,
    title text NOT NULL,
    description text NOT NULL,
    category text NOT NULL,
    venue text NOT NULL,
    starts_at timestamptz NOT NULL,
    on_sale boolean NOT NULL DEFAULT false,
    position bigint NOT NULL,
    embedding vector({DIMENSION}),
    model text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS show_vectors_embedding_hnsw
    ON {schema}.show_vectors USING hnsw (embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS show_vectors_upcoming
    ON {schema}.show_vectors (starts_at) WHERE on_sale;
CREATE TABLE IF NOT EXISTS {schema}.pending_embeddings (
    show_id uuid PRIMARY KEY,
    title text NOT NULL,
    description text NOT NULL,
    category text NOT NULL,
    venue text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.bookings (
    booking_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    show_id uuid NOT NULL,
    confirmed boolean NOT NULL,
    position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS bookings_confirmed
    ON {schema}.bookings (customer_id, show_id) WHERE confirmed;
CREATE TABLE IF NOT EXISTS {schema}.customer_shows (
    customer_id uuid NOT NULL,
    show_id uuid NOT NULL,
    PRIMARY KEY (customer_id, show_id)
);
CREATE TABLE IF NOT EXISTS {schema}.show_sales (
    show_id uuid PRIMARY KEY,
    confirmed integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS {schema}.consumer_offsets (
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL DEFAULT 0,
    last_digest bytea,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS {schema}.skipped_records (
    topic text NOT NULL,
    partition integer NOT NULL,
    record_offset bigint NOT NULL,
    event_id uuid,
    position bigint,
    error text NOT NULL,
    skipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, record_offset)
);
CREATE INDEX IF NOT EXISTS skipped_records_position
    ON {schema}.skipped_records (position) WHERE position IS NOT NULL;
"""


def _text_columns(shows: Sequence[ShowChange]) -> list[list[Any]]:
    """show_id, title, description, category, venue: the columns that both `show_vectors` and
    `pending_embeddings` start with, one array each for `unnest`."""
    return [
        [c.show_id for c in shows],
        [c.state.title for c in shows],
        [c.state.description for c in shows],
        [c.state.category for c in shows],
        [c.state.venue for c in shows],
    ]


class RecommenderProjection:
    """The `rec` tables (or a rebuild's) and how records change them."""

    def __init__(self, schema: str = SCHEMA) -> None:
        self.schema = schema

    def apply(self, conn: psycopg.Connection[Any], changes: Sequence[Change]) -> None:
        """Apply a batch, set-based, in the caller's transaction."""
        shows = newest((c for c in changes if isinstance(c, ShowChange)), "show_id")
        bookings = newest((c for c in changes if isinstance(c, BookingChange)), "booking_id")
        self._shows(conn, shows)
        self._bookings(conn, bookings)
        self._skip(conn, [c for c in changes if isinstance(c, Malformed)])

    def apply_one_by_one(self, conn: psycopg.Connection[Any], changes: Sequence[Change]) -> None:
        """Like `apply`, each change in a savepoint: one PostgreSQL refuses is skipped."""
        for change in changes:
            try:
                with conn.transaction():
                    self.apply(conn, [change])
            except (psycopg.DataError, psycopg.IntegrityError) as error:
                if isinstance(change, Malformed):
                    raise
                self._skip(conn, [Malformed(change.record, f"refused by PostgreSQL: {error}")])

    def _shows(self, conn: psycopg.Connection[Any], shows: list[ShowChange]) -> None:
        if not shows:
            return
        rows = conn.execute(
            f"SELECT show_id, position, title, description, category, venue"
            f" FROM {self.schema}.show_vectors WHERE show_id = ANY(%s)",
            ([c.show_id for c in shows],),
        ).fetchall()
        known = {row[0]: (int(row[1]), ShowText(*row[2:])) for row in rows}
        newer = [c for c in shows if c.show_id not in known or known[c.show_id][0] < c.position]
        to_embed = [
            c for c in newer if c.show_id not in known or known[c.show_id][1] != c.state.text
        ]
        if to_embed:
            conn.execute(
                f"INSERT INTO {self.schema}.pending_embeddings"
                " (show_id, title, description, category, venue)"
                " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[])"
                " ON CONFLICT (show_id) DO UPDATE SET title = excluded.title,"
                " description = excluded.description, category = excluded.category,"
                " venue = excluded.venue, attempts = 0, last_error = NULL,"
                " next_attempt_at = now()",
                _text_columns(to_embed),
            )
        if newer:
            conn.execute(
                f"INSERT INTO {self.schema}.show_vectors AS v (show_id, title, description,"
                " category, venue, starts_at, on_sale, position, updated_at)"
                " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[],"
                " %s::text[], %s::timestamptz[], %s::boolean[], %s::bigint[], %s::timestamptz[])"
                " ON CONFLICT (show_id) DO UPDATE SET title = excluded.title,"
                " description = excluded.description, category = excluded.category,"
                " venue = excluded.venue, starts_at = excluded.starts_at,"
                " on_sale = excluded.on_sale, position = excluded.position,"
                " updated_at = excluded.updated_at WHERE v.position < excluded.position",
                (
                    *_text_columns(newer),
                    [c.state.starts_at for c in newer],
                    [c.state.status == ON_SALE for c in newer],
                    [c.position for c in newer],
                    [c.occurred_at for c in newer],
                ),
            )

    def _bookings(self, conn: psycopg.Connection[Any], bookings: list[BookingChange]) -> None:
        if not bookings:
            return
        rows = conn.execute(
            f"SELECT booking_id, position, confirmed FROM {self.schema}.bookings"
            " WHERE booking_id = ANY(%s) ORDER BY booking_id FOR UPDATE",
            ([c.booking_id for c in bookings],),
        ).fetchall()
        known = {row[0]: (int(row[1]), bool(row[2])) for row in rows}
        newer = [
            c for c in bookings if c.booking_id not in known or known[c.booking_id][0] < c.position
        ]
        if not newer:
            return
        conn.execute(
            f"INSERT INTO {self.schema}.bookings"
            " (booking_id, customer_id, show_id, confirmed, position)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::boolean[], %s::bigint[])"
            " ON CONFLICT (booking_id) DO UPDATE SET confirmed = excluded.confirmed,"
            " position = excluded.position",
            (
                [c.booking_id for c in newer],
                [c.customer_id for c in newer],
                [c.show_id for c in newer],
                [c.confirmed for c in newer],
                [c.position for c in newer],
            ),
        )
        changed = [c for c in newer if c.confirmed != known.get(c.booking_id, (0, False))[1]]
        if not changed:
            return
        deltas: dict[UUID, int] = {}
        for c in changed:
            deltas[c.show_id] = deltas.get(c.show_id, 0) + (1 if c.confirmed else -1)
        conn.execute(
            f"INSERT INTO {self.schema}.show_sales AS s (show_id, confirmed)"
            " SELECT * FROM unnest(%s::uuid[], %s::int[])"
            " ON CONFLICT (show_id) DO UPDATE SET confirmed = s.confirmed + excluded.confirmed",
            (list(deltas), list(deltas.values())),
        )
        gained = [c for c in changed if c.confirmed]
        lost = [c for c in changed if not c.confirmed]
        conn.execute(
            f"INSERT INTO {self.schema}.customer_shows"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[]) ON CONFLICT DO NOTHING",
            ([c.customer_id for c in gained], [c.show_id for c in gained]),
        )
        conn.execute(
            f"DELETE FROM {self.schema}.customer_shows c"
            " USING unnest(%s::uuid[], %s::uuid[]) AS l(customer_id, show_id)"
            " WHERE c.customer_id = l.customer_id AND c.show_id = l.show_id AND NOT EXISTS ("
            f"  SELECT 1 FROM {self.schema}.bookings b WHERE b.customer_id = l.customer_id"
            "   AND b.show_id = l.show_id AND b.confirmed)",
            ([c.customer_id for c in lost], [c.show_id for c in lost]),
        )

    def _skip(self, conn: psycopg.Connection[Any], malformed: list[Malformed]) -> None:
        for m in malformed:
            log.error(
                "recommender: skipping record %s/%s@%s: %s",
                m.record.topic,
                m.record.partition,
                m.record.offset,
                m.error,
            )
        if malformed:
            conn.execute(
                f"INSERT INTO {self.schema}.skipped_records"
                " (topic, partition, record_offset, event_id, position, error)"
                " SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::uuid[],"
                " %s::bigint[], %s::text[]) ON CONFLICT DO NOTHING",
                (
                    [m.record.topic for m in malformed],
                    [m.record.partition for m in malformed],
                    [m.record.offset for m in malformed],
                    [m.event_id for m in malformed],
                    [m.position for m in malformed],
                    [m.error for m in malformed],
                ),
            )


@dataclass(frozen=True)
class TableStatus:
    offsets: dict[tuple[str, int], int]
    watermark: int
    pending: int
    pending_due: int
    skipped: int
    models: dict[str | None, int] = field(default_factory=dict)


def table_status(conn: psycopg.Connection[Any], schema: str = SCHEMA) -> TableStatus:
    """What `schema`'s tables hold: offsets, pending embeddings, skipped records, shows per
    model, and the watermark."""
    offsets = conn.execute(
        f"SELECT topic, partition, next_offset FROM {schema}.consumer_offsets"
        " ORDER BY topic, partition"
    ).fetchall()
    pending = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE next_attempt_at <= now())"
        f" FROM {schema}.pending_embeddings"
    ).fetchone()
    skipped = conn.execute(f"SELECT count(*) FROM {schema}.skipped_records").fetchone()
    assert pending is not None and skipped is not None
    return TableStatus(
        offsets={(t, p): int(n) for t, p, n in offsets},
        watermark=read_watermark(conn),
        pending=int(pending[0]),
        pending_due=int(pending[1]),
        skipped=int(skipped[0]),
        models=shows_per_model(conn, schema),
    )


def read_watermark(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT position FROM follower_positions WHERE name = %s", (FOLLOWER,)
    ).fetchone()
    return int(row[0]) if row else 0


def set_watermark(conn: psycopg.Connection[Any], position: int) -> None:
    conn.execute(
        "UPDATE follower_positions SET position = %s, event_time = NULL, updated_at = now()"
        " WHERE name = %s",
        (position, FOLLOWER),
    )


def _layout(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """The layout of the tables in `schema`: None if there are none, "" if too old to say."""
    found = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
        (f"{schema}.show_vectors", f"{schema}.meta"),
    ).fetchone()
    if found is None or not found[0]:
        return None
    if not found[1]:
        return ""
    row = conn.execute(f"SELECT value FROM {schema}.meta WHERE key = 'layout'").fetchone()
    return "" if row is None else str(row[0])


SETUP_LOCK = 0x7265_635F_7365_7475  # "rec_setu": one process at a time creates the tables


def create_tables(conn: psycopg.Connection[Any], schema: str = SCHEMA) -> None:
    """Create the tables of `schema` if missing (and the watermark's row), in one transaction
    with the setup lock. Tables of another layout are dropped first: they are rebuilt from
    the topics, and the watermark starts again from 0."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(POSITIONS_DDL)
        conn.execute(
            "INSERT INTO follower_positions (name) VALUES (%s) ON CONFLICT DO NOTHING",
            (FOLLOWER,),
        )
        layout = _layout(conn, schema)
        if layout is not None and layout != LAYOUT:
            log.warning(
                "recommender: the tables in %s have layout %r, this version needs %r: they are"
                " dropped and rebuilt from the Kafka topics",
                schema,
                layout,
                LAYOUT,
            )
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            if schema == SCHEMA:
                set_watermark(conn, 0)
        conn.execute(ddl(schema))
        conn.execute(
            f"INSERT INTO {schema}.meta VALUES ('layout', %s) ON CONFLICT DO NOTHING", (LAYOUT,)
        )


def ensure_schema(store: PostgresEventStore) -> bool:
    """Create the `rec` tables if missing; False if this PostgreSQL has no pgvector (or cannot
    be reached): then recommendations are off."""
    try:
        with store.connection() as conn:
            create_tables(conn)
    except psycopg.Error as error:
        log.warning("recommendations are off: %s", error)
        return False
    return True
