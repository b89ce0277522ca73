"""The recommender's read model, fed by the integration events on Kafka.

`recommender/runner.py` consumes `{prefix}.shows.v1` and `{prefix}.bookings.v1`
(docs/INTEGRATION_EVENTS.md) and hands each batch of records to `RecommenderProjection`, which
applies it in one PostgreSQL transaction together with the consumed offsets. The tables (schema
`rec`; a rebuild fills `rec_rebuild`, then swaps it in):

- `show_vectors`: one row per show (title, description, category, venue, start, whether on
  sale), its embedding (pgvector, HNSW index, cosine) and the `model` that produced it;
- `pending_embeddings`: shows waiting for their (re-)embedding, with a backoff (survival mode:
  if the embedder fails, they stay there, and the batch that queued them still commits);
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

Read-your-writes: the `recommender` row of `follower_positions` is the highest log position P
such that every show and booking event up to P has been applied (or skipped as malformed). It is
checked against the event store in the same database, so `?after=P` waits (recommender/api.py)
mean what they mean for the log followers. It stalls while the relay or Kafka is behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.utils import get_topic
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError

from domain.booking import CONFIRMED, Booking
from domain.show import ON_SALE, Show
from infra.event_store import EVENTS_TABLE, PostgresEventStore
from infra.log_follower import POSITIONS_DDL
from process_managers.integration_events import BOOKING_TYPES, SHOW_TYPES, IntegrationEvent
from projections.base import event_type
from recommender.embedder import DIMENSION, Embedder, ShowText, to_pgvector

log = logging.getLogger(__name__)

FOLLOWER = "recommender"  # its row in follower_positions: the read-your-writes watermark
SCHEMA = "rec"
LAYOUT = "kafka-1"  # change it with the tables: older tables are then dropped and rebuilt
BATCH = 64  # shows embedded per call of the embedder at most


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


def _relayed_topics() -> list[str]:
    """The event store's topics of the domain events that the relay publishes."""
    kinds = ((Booking, BOOKING_TYPES), (Show, SHOW_TYPES))
    return [
        get_topic(event_type(aggregate, name.split(".", 1)[1]))
        for aggregate, names in kinds
        for name in names
    ]


RELAYED_TOPICS = _relayed_topics()


# ---- records and what they change ------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """A Kafka record, as far as the projection cares."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]  # PostgreSQL text: no NUL


class ShowState(BaseModel):
    """The part of a `show.*` payload the recommender reads."""

    model_config = ConfigDict(frozen=True)

    status: Text
    title: Text
    description: Text
    category: Text
    venue: Text
    starts_at: AwareDatetime

    @property
    def text(self) -> ShowText:
        return ShowText(self.title, self.description, self.category, self.venue)


class CustomerRef(BaseModel):
    id: UUID


class BookingState(BaseModel):
    """The part of a `booking.*` payload the recommender reads."""

    status: Text
    customer: CustomerRef


@dataclass(frozen=True)
class ShowChange:
    record: Record
    show_id: UUID
    position: int
    occurred_at: datetime
    state: ShowState


@dataclass(frozen=True)
class BookingChange:
    record: Record
    booking_id: UUID
    show_id: UUID
    customer_id: UUID
    position: int
    confirmed: bool


@dataclass(frozen=True)
class Malformed:
    record: Record
    error: str
    event_id: UUID | None = None
    position: int | None = None


Change = ShowChange | BookingChange | Malformed


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()[:3]
    ]
    return "; ".join(parts).replace("\x00", "")[:500]


def parse(record: Record) -> Change:
    """What a record changes; `Malformed` if it does not follow the contract."""
    try:
        event = IntegrationEvent.from_json(record.value or b"")
    except ValidationError as error:
        return Malformed(record, _summary(error))
    try:
        if event.booking_id is None:
            show = ShowState.model_validate(event.payload)
            return ShowChange(record, event.show_id, event.position, event.occurred_at, show)
        booking = BookingState.model_validate(event.payload)
    except ValidationError as error:
        return Malformed(record, _summary(error), event.event_id, event.position)
    return BookingChange(
        record,
        event.booking_id,
        event.show_id,
        booking.customer.id,
        event.position,
        booking.status == CONFIRMED,
    )


C = TypeVar("C", ShowChange, BookingChange)


def _newest(changes: Iterable[C], key: str) -> list[C]:
    """Each show's (booking's) newest change: its state after the batch."""
    newest: dict[UUID, C] = {}
    for change in changes:
        found = newest.get(getattr(change, key))
        if found is None or found.position < change.position:
            newest[getattr(change, key)] = change
    return list(newest.values())


@dataclass(frozen=True)
class Embedded:
    """What one call of the embedder did: `count` shows embedded, or `error` (they wait)."""

    count: int
    error: str | None = None


@dataclass(frozen=True)
class Offset:
    """The stored position of one topic-partition: the next offset to read, and a digest of
    the record just before it (None at offset 0)."""

    next_offset: int
    last_digest: bytes | None = None


@dataclass(frozen=True)
class TableStatus:
    offsets: dict[tuple[str, int], int]
    watermark: int
    pending: int
    pending_due: int
    skipped: int
    models: dict[str | None, int] = field(default_factory=dict)


class OffsetsMovedError(Exception):
    """The stored offsets are not where this consumer left them (another consumer, or a
    rebuild, moved them): the batch was rolled back; re-read from the stored offsets."""


class RecommenderProjection:
    """The `rec` tables (or a rebuild's) and how records and embeddings change them."""

    def __init__(self, embedder: Embedder, schema: str = SCHEMA) -> None:
        self.embedder = embedder
        self.schema = schema

    # ---- offsets -------------------------------------------------------------------------

    def load_offsets(
        self, conn: psycopg.Connection[Any], partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], Offset]:
        """The stored offset of each partition (a new partition starts at 0)."""
        wanted = list(partitions)
        with conn.transaction():
            conn.execute(
                f"INSERT INTO {self.schema}.consumer_offsets (topic, partition)"
                " SELECT * FROM unnest(%s::text[], %s::int[]) ON CONFLICT DO NOTHING",
                ([t for t, _ in wanted], [p for _, p in wanted]),
            )
            rows = conn.execute(
                f"SELECT topic, partition, next_offset, last_digest"
                f" FROM {self.schema}.consumer_offsets"
            ).fetchall()
        stored = {(t, p): Offset(int(n), d) for t, p, n, d in rows}
        return {tp: stored[tp] for tp in wanted}

    def save_offsets(
        self,
        conn: psycopg.Connection[Any],
        expected: Mapping[tuple[str, int], int],
        reached: Mapping[tuple[str, int], Offset],
    ) -> None:
        """Move each partition from `expected` to `reached`, in the caller's transaction;
        OffsetsMovedError if one of them is not at `expected`."""
        keys = list(reached)
        rows = conn.execute(
            f"SELECT topic, partition, next_offset FROM {self.schema}.consumer_offsets"
            " WHERE (topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[]))"
            " ORDER BY topic, partition FOR UPDATE",
            ([t for t, _ in keys], [p for _, p in keys]),
        ).fetchall()
        found = {(t, p): int(n) for t, p, n in rows}
        moved = {tp: found.get(tp) for tp in keys if found.get(tp) != expected[tp]}
        if moved:
            raise OffsetsMovedError(f"stored offsets {moved} differ from {dict(expected)}")
        with conn.cursor() as cur:
            cur.executemany(
                f"UPDATE {self.schema}.consumer_offsets SET next_offset = %s, last_digest = %s,"
                " updated_at = now() WHERE topic = %s AND partition = %s",
                [(o.next_offset, o.last_digest, t, p) for (t, p), o in reached.items()],
            )

    # ---- applying records ----------------------------------------------------------------

    def apply(self, conn: psycopg.Connection[Any], changes: Sequence[Change]) -> None:
        """Apply a batch, set-based, in the caller's transaction."""
        shows = _newest((c for c in changes if isinstance(c, ShowChange)), "show_id")
        bookings = _newest((c for c in changes if isinstance(c, BookingChange)), "booking_id")
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
                (
                    [c.show_id for c in to_embed],
                    [c.state.title for c in to_embed],
                    [c.state.description for c in to_embed],
                    [c.state.category for c in to_embed],
                    [c.state.venue for c in to_embed],
                ),
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
                    [c.show_id for c in newer],
                    [c.state.title for c in newer],
                    [c.state.description for c in newer],
                    [c.state.category for c in newer],
                    [c.state.venue for c in newer],
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

    # ---- embeddings ----------------------------------------------------------------------

    def embed_pending(self, conn: psycopg.Connection[Any], limit: int = BATCH) -> Embedded:
        """Embed due pending shows, in the caller's transaction; on failure they stay pending
        with a backoff. Rows another transaction holds are left for later (never waits)."""
        rows = conn.execute(
            f"SELECT p.show_id, p.title, p.description, p.category, p.venue"
            f" FROM {self.schema}.pending_embeddings p"
            f" JOIN {self.schema}.show_vectors v USING (show_id)"
            " WHERE p.next_attempt_at <= now() ORDER BY p.next_attempt_at, p.show_id"
            " LIMIT %s FOR UPDATE OF p, v SKIP LOCKED",
            (limit,),
        ).fetchall()
        if not rows:
            return Embedded(0)
        ids = [r[0] for r in rows]
        try:
            vectors = self.embedder.embed([ShowText(*r[1:]) for r in rows])
            if len(vectors) != len(rows):
                raise ValueError(f"{len(vectors)} vectors for {len(rows)} shows")
        except Exception as error:  # any failure of the model: survive, retry later
            log.warning("recommender: %s shows left pending: %s", len(rows), error)
            conn.execute(
                f"UPDATE {self.schema}.pending_embeddings SET attempts = attempts + 1,"
                " last_error = %s, next_attempt_at = now()"
                " + least(power(2, attempts), 300) * interval '1 second'"
                " WHERE show_id = ANY(%s)",
                (str(error)[:500], ids),
            )
            return Embedded(0, str(error) or type(error).__name__)
        with conn.cursor() as cur:
            cur.executemany(
                f"UPDATE {self.schema}.show_vectors SET embedding = %s::vector, model = %s"
                " WHERE show_id = %s",
                [
                    (to_pgvector(v), self.embedder.model_name, i)
                    for v, i in zip(vectors, ids, strict=True)
                ],
            )
        conn.execute(
            f"DELETE FROM {self.schema}.pending_embeddings WHERE show_id = ANY(%s)", (ids,)
        )
        return Embedded(len(ids))

    def embed_due(self, store: PostgresEventStore) -> Embedded:
        """Embed due pending shows in a transaction of their own."""
        with store.connection() as conn, conn.transaction():
            return self.embed_pending(conn)

    def embed_all(self, store: PostgresEventStore) -> Embedded:
        """Embed every due pending show, a batch per transaction, until none is due or the
        embedder fails (then `error` says why; the rest waits)."""
        total = 0
        while True:
            done = self.embed_due(store)
            total += done.count
            if done.error is not None or done.count < BATCH:
                return Embedded(total, done.error)

    def queue_other_models(self, conn: psycopg.Connection[Any]) -> int:
        """Queue every show whose embedding is not the configured model's, due now."""
        rows = conn.execute(
            f"INSERT INTO {self.schema}.pending_embeddings"
            " (show_id, title, description, category, venue)"
            f" SELECT show_id, title, description, category, venue"
            f" FROM {self.schema}.show_vectors WHERE model IS DISTINCT FROM %s"
            " ON CONFLICT (show_id) DO UPDATE SET next_attempt_at = now() RETURNING show_id",
            (self.embedder.model_name,),
        ).fetchall()
        return len(rows)

    def models(self, conn: psycopg.Connection[Any]) -> dict[str | None, int]:
        """How many shows each model embedded (None: not embedded yet)."""
        rows = conn.execute(
            f"SELECT model, count(*) FROM {self.schema}.show_vectors GROUP BY model ORDER BY 1"
        ).fetchall()
        return {model: int(n) for model, n in rows}

    # ---- the read-your-writes watermark --------------------------------------------------

    def applied_through(self, conn: psycopg.Connection[Any], after: int) -> int:
        """The highest log position P >= `after` such that every show and booking event up to
        P is applied to these tables (or was skipped as malformed): the position before the
        first event after `after` that is not, else the head of the log."""
        head_row = conn.execute(
            f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"
        ).fetchone()
        head = int(head_row[0]) if head_row else 0
        missing = conn.execute(
            f"""
            SELECT e.notification_id FROM {EVENTS_TABLE} e
            WHERE e.notification_id > %(after)s AND e.notification_id <= %(head)s
              AND e.topic = ANY(%(topics)s)
              AND NOT EXISTS (SELECT 1 FROM {self.schema}.show_vectors v
                              WHERE v.show_id = e.originator_id
                                AND v.position >= e.notification_id)
              AND NOT EXISTS (SELECT 1 FROM {self.schema}.bookings b
                              WHERE b.booking_id = e.originator_id
                                AND b.position >= e.notification_id)
              AND NOT EXISTS (SELECT 1 FROM {self.schema}.skipped_records k
                              WHERE k.position = e.notification_id)
            ORDER BY e.notification_id LIMIT 1
            """,
            {"after": after, "head": head, "topics": RELAYED_TOPICS},
        ).fetchone()
        return max(after, head if missing is None else int(missing[0]) - 1)

    def advance_watermark(self, conn: psycopg.Connection[Any]) -> int:
        """Move the `recommender` position as far as the tables are complete; returns it."""
        row = conn.execute(
            "SELECT position FROM follower_positions WHERE name = %s", (FOLLOWER,)
        ).fetchone()
        current = int(row[0]) if row else 0
        reached = self.applied_through(conn, current)
        if reached != current:
            set_watermark(conn, reached)
        return reached

    # ---- status --------------------------------------------------------------------------

    def status(self, conn: psycopg.Connection[Any]) -> TableStatus:
        offsets = conn.execute(
            f"SELECT topic, partition, next_offset FROM {self.schema}.consumer_offsets"
            " ORDER BY topic, partition"
        ).fetchall()
        pending = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE next_attempt_at <= now())"
            f" FROM {self.schema}.pending_embeddings"
        ).fetchone()
        skipped = conn.execute(f"SELECT count(*) FROM {self.schema}.skipped_records").fetchone()
        watermark = conn.execute(
            "SELECT position FROM follower_positions WHERE name = %s", (FOLLOWER,)
        ).fetchone()
        assert pending is not None and skipped is not None
        return TableStatus(
            offsets={(t, p): int(n) for t, p, n in offsets},
            watermark=int(watermark[0]) if watermark else 0,
            pending=int(pending[0]),
            pending_due=int(pending[1]),
            skipped=int(skipped[0]),
            models=self.models(conn),
        )


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
