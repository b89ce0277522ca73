"""Shows waiting for their (re-)embedding (`{schema}.pending_embeddings`) and how they get one.

The projection queues a show when it is new or its text changed; the embedder is called here,
a batch at a time, after the records are applied. Survival mode: if the embedder fails, the
shows stay queued with a backoff (2^attempts seconds, at most 5 minutes), and the batch that
queued them has committed anyway."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from infra.event_store import PostgresEventStore
from recommender.embedder import Embedder, ShowText
from recommender.vectors import Vector, use_vectors

log = logging.getLogger(__name__)

BATCH = 64  # shows embedded per call of the embedder at most


@dataclass(frozen=True)
class Embedded:
    """What one call of the embedder did: `count` shows embedded, or `error` (they wait)."""

    count: int
    error: str | None = None


def shows_per_model(conn: psycopg.Connection[Any], schema: str) -> dict[str | None, int]:
    """How many shows each model embedded (None: not embedded yet)."""
    rows = conn.execute(
        f"SELECT model, count(*) FROM {schema}.show_vectors GROUP BY model ORDER BY 1"
    ).fetchall()
    return {model: int(n) for model, n in rows}


class EmbeddingQueue:
    """The pending shows of `schema`'s tables, embedded by `embedder`."""

    def __init__(self, embedder: Embedder, schema: str) -> None:
        self.embedder = embedder
        self.schema = schema

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
        use_vectors(conn)
        with conn.cursor() as cur:
            cur.executemany(
                f"UPDATE {self.schema}.show_vectors SET embedding = %s, model = %s"
                " WHERE show_id = %s",
                [
                    (Vector(v), self.embedder.model_name, i)
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
