"""The recommender's read model: show vectors, who booked what, and sales for popularity.

A log follower named `recommender` (infra/log_follower.py), exactly once like the projections:
each page is applied in the transaction that moves its position. It follows the event store's
log rather than the Kafka integration events (same facts; the exactly-once follower was at hand).

Survival mode: a scheduled show first lands in `rec.pending_embeddings`; at the end of every
page the due pending shows are embedded. If the embedder fails, they stay pending (with a
backoff) and the page still commits; a later page retries them, as does `retry_pending`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.utils import get_topic

from domain.booking import Booking
from domain.show import Show
from infra.event_store import PostgresEventStore
from infra.log_follower import LogFollower, LoggedEvent
from projections.base import EventReader, event_type
from recommender.embedder import DIMENSION, Embedder, ShowText, to_pgvector

log = logging.getLogger(__name__)

FOLLOWER = "recommender"
SCHEMA = "rec"
BATCH = 64  # pending shows embedded per page at most

DDL = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.show_vectors (
    show_id uuid PRIMARY KEY,
    embedding vector({DIMENSION}),
    model text,
    title text NOT NULL,
    category text NOT NULL,
    venue text NOT NULL,
    starts_at timestamptz NOT NULL,
    on_sale boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS show_vectors_embedding_hnsw
    ON {SCHEMA}.show_vectors USING hnsw (embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS show_vectors_upcoming
    ON {SCHEMA}.show_vectors (starts_at) WHERE on_sale;
CREATE TABLE IF NOT EXISTS {SCHEMA}.pending_embeddings (
    show_id uuid PRIMARY KEY,
    title text NOT NULL,
    description text NOT NULL,
    category text NOT NULL,
    venue text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.bookings (
    booking_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    show_id uuid NOT NULL,
    confirmed boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.customer_shows (
    customer_id uuid NOT NULL,
    show_id uuid NOT NULL,
    PRIMARY KEY (customer_id, show_id)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.show_sales (
    show_id uuid PRIMARY KEY,
    confirmed integer NOT NULL DEFAULT 0
);
"""

SCHEDULED = event_type(Show, "Scheduled")
SALE_OPENED = event_type(Show, "SaleOpened")
SALE_CLOSED = event_type(Show, "SaleClosed")
SHOW_CANCELLED = event_type(Show, "Cancelled")
PLACED = event_type(Booking, "Placed")
CONFIRMED = event_type(Booking, "Confirmed")
BOOKING_CANCELLED = event_type(Booking, "Cancelled")
HANDLED = (
    SCHEDULED,
    SALE_OPENED,
    SALE_CLOSED,
    SHOW_CANCELLED,
    PLACED,
    CONFIRMED,
    BOOKING_CANCELLED,
)


class RecommenderProjection:
    """A PageHandler: see the module's docstring."""

    name = FOLLOWER

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    @staticmethod
    def topics() -> list[str]:
        return [get_topic(kind) for kind in HANDLED]

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        for logged in page:
            self._apply(conn, logged.event)
        self.embed_pending(conn)

    def _apply(self, conn: psycopg.Connection[Any], e: Any) -> None:
        kind = type(e)
        if kind is SCHEDULED:
            conn.execute(
                f"INSERT INTO {SCHEMA}.show_vectors (show_id, title, category, venue, starts_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (e.originator_id, e.title, e.category, e.venue, e.starts_at, e.timestamp),
            )
            conn.execute(
                f"INSERT INTO {SCHEMA}.pending_embeddings (show_id, title, description,"
                " category, venue) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (e.originator_id, e.title, e.description, e.category, e.venue),
            )
        elif kind in (SALE_OPENED, SALE_CLOSED, SHOW_CANCELLED):
            conn.execute(
                f"UPDATE {SCHEMA}.show_vectors SET on_sale = %s, updated_at = %s"
                " WHERE show_id = %s",
                (kind is SALE_OPENED, e.timestamp, e.originator_id),
            )
        elif kind is PLACED:
            conn.execute(
                f"INSERT INTO {SCHEMA}.bookings (booking_id, customer_id, show_id)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (e.originator_id, e.customer_id, e.show_id),
            )
        elif kind is CONFIRMED:
            self._confirmed(conn, e.originator_id, +1)
        elif kind is BOOKING_CANCELLED:
            self._confirmed(conn, e.originator_id, -1)

    def _confirmed(self, conn: psycopg.Connection[Any], booking_id: UUID, delta: int) -> None:
        """A booking confirmed (+1), or a confirmed one cancelled (-1)."""
        row = conn.execute(
            f"UPDATE {SCHEMA}.bookings SET confirmed = %s"
            " WHERE booking_id = %s AND confirmed = %s RETURNING customer_id, show_id",
            (delta > 0, booking_id, delta < 0),
        ).fetchone()
        if row is None:
            return  # not placed in our log, or not confirmed (a cancelled hold)
        customer_id, show_id = row
        conn.execute(
            f"INSERT INTO {SCHEMA}.show_sales AS s (show_id, confirmed) VALUES (%s, %s)"
            " ON CONFLICT (show_id) DO UPDATE SET confirmed = greatest(0, s.confirmed + %s)",
            (show_id, max(delta, 0), delta),
        )
        if delta > 0:
            conn.execute(
                f"INSERT INTO {SCHEMA}.customer_shows VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (customer_id, show_id),
            )
            return
        still = conn.execute(
            f"SELECT 1 FROM {SCHEMA}.bookings WHERE customer_id = %s AND show_id = %s"
            " AND confirmed",
            (customer_id, show_id),
        ).fetchone()
        if still is None:
            conn.execute(
                f"DELETE FROM {SCHEMA}.customer_shows WHERE customer_id = %s AND show_id = %s",
                (customer_id, show_id),
            )

    def embed_pending(self, conn: psycopg.Connection[Any]) -> int:
        """Embed the due pending shows; on failure keep them pending. Returns how many."""
        rows = conn.execute(
            f"SELECT show_id, title, description, category, venue FROM"
            f" {SCHEMA}.pending_embeddings WHERE next_attempt_at <= now()"
            " ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (BATCH,),
        ).fetchall()
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        try:
            vectors = self.embedder.embed([ShowText(*r[1:]) for r in rows])
            if len(vectors) != len(rows):
                raise ValueError(f"{len(vectors)} vectors for {len(rows)} shows")
        except Exception as error:  # any failure of the model: survive, retry later
            log.warning("recommender: %s shows left pending: %s", len(rows), error)
            conn.execute(
                f"UPDATE {SCHEMA}.pending_embeddings SET attempts = attempts + 1,"
                " last_error = %s, next_attempt_at = now()"
                " + least(power(2, attempts), 300) * interval '1 second'"
                " WHERE show_id = ANY(%s)",
                (str(error)[:500], ids),
            )
            return 0
        with conn.cursor() as cur:
            cur.executemany(
                f"UPDATE {SCHEMA}.show_vectors SET embedding = %s::vector, model = %s"
                " WHERE show_id = %s",
                [
                    (to_pgvector(v), self.embedder.model_name, i)
                    for v, i in zip(vectors, ids, strict=True)
                ],
            )
        conn.execute(f"DELETE FROM {SCHEMA}.pending_embeddings WHERE show_id = ANY(%s)", (ids,))
        return len(ids)

    def retry_pending(self, store: PostgresEventStore) -> int:
        """Embed due pending shows outside of a page (e.g. from a timer while the log is idle)."""
        with store.connection() as conn, conn.transaction():
            return self.embed_pending(conn)


def recommender_follower(
    store: PostgresEventStore, embedder: Embedder, poll_interval: float = 0.25
) -> LogFollower:
    projection = RecommenderProjection(embedder)
    return LogFollower(
        store,
        projection,
        poll_interval=poll_interval,
        reader=EventReader(projection.topics()),
    )


def ensure_schema(store: PostgresEventStore) -> bool:
    """Create the `rec` tables if missing; False if this PostgreSQL has no pgvector."""
    try:
        with store.connection() as conn, conn.transaction():
            conn.execute(DDL)
    except psycopg.Error as error:
        log.warning("recommendations are off: %s", error)
        return False
    return True
