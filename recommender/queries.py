"""Recommendations from the `rec` read model, in tiers; every answer says which tier made it.

- `vector`: the nearest upcoming shows on sale by cosine distance (`<=>`), on the HNSW index,
  under a statement timeout. Every vector answer is also stored in Redis.
- `cache`: the last vector answer to the same question, from Redis, when the vector query is
  slow (it hit its statement timeout) or failed, or when PostgreSQL is unreachable.
- `fulltext`: for similar shows, PostgreSQL full-text search on the catalog (`read.shows`,
  its `search` column): same genre first, then shared words. Used when the show has no
  embedding yet (pending: the embedder failed) or its vector query failed with nothing cached.
- `popular`: the most booked upcoming shows: for a customer with no booking yet, and as the
  last tier.

The HNSW post-filter problem: an HNSW scan yields `hnsw.ef_search` candidates (40 by default)
and only then are shows that are not on sale, past, or already booked filtered out, so a query
could answer fewer than `limit` shows while enough exist. pgvector 0.8 has iterative scans
(`hnsw.iterative_scan`); the pgvector of the embedded stack is 0.6.2, which has not. So the
vector query raises `hnsw.ef_search` (`ef_search`), uses iterative scans where the server has
them, and when the index still answers fewer than `limit` shows it runs the same query exactly
(no index scan: the upcoming shows are read through their partial index), inside the same
statement timeout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal
from uuid import UUID

import psycopg

from domain.show import ON_SALE
from infra.event_store import PostgresEventStore
from infra.read_cache import ReadCache
from recommender.pitch import COMING_UP, Pitch, PitchShow, PitchWriter, because_you_enjoyed
from recommender.projection import SCHEMA
from recommender.settings import RecommenderSettings
from recommender.vectors import Vector, use_vectors

__all__ = ["BookingSuggestions", "Recommender", "RecommenderSettings", "write_pitch"]

log = logging.getLogger(__name__)

Source = Literal["vector", "popular", "fulltext", "cache"]
Row = tuple[Any, ...]

ITERATIVE_SCAN_SINCE = (0, 8, 0)  # pgvector version with `hnsw.iterative_scan`
CACHE_PREFIX = "tb:rec:"


@dataclass(frozen=True)
class Recommended:
    show_id: UUID
    title: str
    category: str
    venue: str
    starts_at: datetime
    score: float | None  # cosine similarity (vector answers, and cached ones)


@dataclass(frozen=True)
class Recommendations:
    source: Source
    items: list[Recommended]


def _items(rows: Sequence[Row], scored: bool) -> list[Recommended]:
    return [
        Recommended(
            show_id=row[0],
            title=row[1],
            category=row[2],
            venue=row[3],
            starts_at=row[4],
            score=round(float(row[5]), 4) if scored else None,
        )
        for row in rows
    ]


def _encode(items: Sequence[Recommended]) -> bytes:
    return json.dumps([asdict(i) for i in items], default=str).encode()


def _decode(body: bytes) -> list[Recommended]:
    return [
        Recommended(
            show_id=UUID(i["show_id"]),
            title=i["title"],
            category=i["category"],
            venue=i["venue"],
            starts_at=datetime.fromisoformat(i["starts_at"]),
            score=i["score"],
        )
        for i in json.loads(body)
    ]


_COLUMNS = "v.show_id, v.title, v.category, v.venue, v.starts_at"
_UPCOMING = "v.on_sale AND v.starts_at > now()"

# The customer's shows (with the one just booked, if any) and the mean of their vectors.
_PROFILE = f"""/* recommender:profile */
SELECT coalesce(array_agg(m.show_id), '{{}}'), avg(v.embedding)
FROM (SELECT show_id FROM {SCHEMA}.customer_shows WHERE customer_id = %(c)s
      UNION SELECT %(b)s::uuid WHERE %(b)s::uuid IS NOT NULL) m
LEFT JOIN {SCHEMA}.show_vectors v ON v.show_id = m.show_id AND v.model = %(m)s
"""

# The nearest upcoming shows to a vector. The inner ORDER BY is the index's own (distance
# only): a tie-breaker there would sort the whole table instead of scanning the index.
_NEAREST = f"""/* recommender:vector */
WITH nearest AS MATERIALIZED (
    SELECT {_COLUMNS}, v.embedding <=> %(p)s::vector AS distance
    FROM {SCHEMA}.show_vectors v
    WHERE v.model = %(m)s AND {_UPCOMING} AND v.show_id <> ALL(%(x)s::uuid[])
    ORDER BY v.embedding <=> %(p)s::vector
    LIMIT %(n)s
)
SELECT show_id, title, category, venue, starts_at, 1 - distance FROM nearest
ORDER BY distance, show_id
"""

# A row if the show is known; its vector, or NULL while it waits for one (of this model).
_SHOW_VECTOR = f"""/* recommender:show */
SELECT CASE WHEN model = %(m)s THEN embedding END FROM {SCHEMA}.show_vectors
WHERE show_id = %(s)s
"""

_POPULAR = f"""/* recommender:popular */
SELECT {_COLUMNS} FROM {SCHEMA}.show_vectors v
LEFT JOIN {SCHEMA}.show_sales s USING (show_id)
WHERE {_UPCOMING} AND v.show_id IS DISTINCT FROM %(s)s
  AND v.show_id NOT IN (
      SELECT show_id FROM {SCHEMA}.customer_shows WHERE customer_id = %(c)s)
ORDER BY coalesce(s.confirmed, 0) DESC, v.starts_at, v.show_id
LIMIT %(n)s
"""

# Shows like one that has no vector: same genre first, then the most words in common (title
# and description, the catalog's `search` column), from the catalog read model.
_FULLTEXT = f"""/* recommender:fulltext */
WITH me AS (
    SELECT show_id, lower(category) AS category,
           websearch_to_tsquery('english',
               regexp_replace(title || ' ' || description, '\\W+', ' or ', 'g')) AS words
    FROM read.shows WHERE show_id = %(s)s
)
SELECT r.show_id, r.title, r.category, r.venue, r.starts_at
FROM read.shows r, me
WHERE r.show_id <> me.show_id AND r.status = '{ON_SALE}' AND r.starts_at > now()
  AND (lower(r.category) = me.category OR r.search @@ me.words)
ORDER BY lower(r.category) = me.category DESC, ts_rank(r.search, me.words) DESC,
         r.starts_at, r.show_id
LIMIT %(n)s
"""

_LIKED = f"""
SELECT v.category FROM (
    SELECT show_id FROM {SCHEMA}.customer_shows WHERE customer_id = %(c)s
    UNION SELECT %(b)s::uuid WHERE %(b)s::uuid IS NOT NULL) m
JOIN {SCHEMA}.show_vectors v USING (show_id)
GROUP BY v.category ORDER BY count(*) DESC, v.category LIMIT 3
"""

# For each recommended show, the customer's show (or `booked`) nearest to it by embedding.
_CLOSEST_BOOKED = f"""
SELECT DISTINCT ON (r.show_id) r.show_id, b.title
FROM {SCHEMA}.show_vectors r
JOIN {SCHEMA}.show_vectors b ON b.model = r.model AND b.embedding IS NOT NULL
WHERE r.show_id = ANY(%(r)s) AND r.model = %(m)s AND r.embedding IS NOT NULL
  AND b.show_id IN (SELECT show_id FROM {SCHEMA}.customer_shows WHERE customer_id = %(c)s
                    UNION SELECT %(b)s::uuid WHERE %(b)s::uuid IS NOT NULL)
ORDER BY r.show_id, r.embedding <=> b.embedding, b.show_id
"""


# Asks PostgreSQL over a connection, given a lookup of the cached answer.
Ask = Callable[
    [psycopg.Connection[Any], Callable[[], Recommendations | None]], Recommendations | None
]


class Recommender:
    """Read-only queries (the recommender's projection writes the tables); see the docstring."""

    def __init__(
        self,
        store: PostgresEventStore,
        model: str,
        cache: ReadCache | None = None,
        vector_timeout_ms: int = 250,
        ef_search: int = 100,
    ) -> None:
        self.store = store
        self.model = model
        self.cache = cache
        self.vector_timeout_ms = vector_timeout_ms
        self.ef_search = ef_search
        self._iterative_scan: bool | None = None  # known after the first vector query

    # --- the questions --------------------------------------------------------------------

    def for_customer(
        self, customer_id: UUID, limit: int, booked: UUID | None = None
    ) -> Recommendations:
        """Shows like those the customer booked (and `booked`, a booking just confirmed that
        the follower may not have recorded yet), excluding those shows."""
        exclude = {booked} if booked is not None else set()
        found = self._answer(
            f"customer:{customer_id}",
            limit,
            exclude,
            partial(self._ask_for_customer, customer_id=customer_id, limit=limit, booked=booked),
        )
        assert found is not None
        return found

    def similar(self, show_id: UUID, limit: int) -> Recommendations | None:
        """Shows like this one; None if the show is unknown."""
        return self._answer(
            f"similar:{show_id}",
            limit,
            {show_id},
            partial(self._ask_similar, show_id=show_id, limit=limit),
        )

    def liked_categories(self, customer_id: UUID, booked: UUID | None = None) -> list[str]:
        """The genres of the shows the customer booked (and `booked`), most booked first."""
        with self.store.connection() as conn:
            rows = conn.execute(_LIKED, {"c": customer_id, "b": booked}).fetchall()
        return [str(r[0]) for r in rows]

    def closest_booked(
        self, customer_id: UUID, show_ids: Sequence[UUID], booked: UUID | None = None
    ) -> dict[UUID, str]:
        """For each of `show_ids`, the title of the customer's show (or `booked`) nearest to
        it by embedding: what "Similar to ..." may truly say."""
        params = {"r": list(show_ids), "m": self.model, "c": customer_id, "b": booked}
        with self.store.connection() as conn:
            rows = conn.execute(_CLOSEST_BOOKED, params).fetchall()
        return {row[0]: str(row[1]) for row in rows}

    def _answer(self, key: str, limit: int, exclude: set[UUID], ask: Ask) -> Recommendations | None:
        """`ask` PostgreSQL, storing its vector answers; when PostgreSQL cannot be reached,
        the cached answer (if any) is the answer."""

        def cached() -> Recommendations | None:
            return self._cached(key, limit, exclude)

        try:
            with self.store.connection() as conn:
                found: Recommendations | None = ask(conn, cached)
        except psycopg.OperationalError as error:  # unreachable, or no pooled connection
            found = cached()
            if found is None:
                raise
            log.warning("recommender: serving %s from the cache: %s", key, error)
            return found
        if found is not None and found.source == "vector" and self.cache is not None:
            self.cache.put(key, 0, _encode(found.items))  # the latest answer wins
        return found

    def _ask_for_customer(
        self,
        conn: psycopg.Connection[Any],
        cached: Callable[[], Recommendations | None],
        customer_id: UUID,
        limit: int,
        booked: UUID | None,
    ) -> Recommendations:
        try:
            with self._vector_search(conn):
                row = conn.execute(
                    _PROFILE, {"c": customer_id, "b": booked, "m": self.model}
                ).fetchone()
                mine, profile = row if row is not None else ([], None)
                rows = [] if profile is None else self._nearest(conn, profile, mine, limit)
        except psycopg.Error as error:
            _degraded(conn, "vector query", error)
            return cached() or self._popular(conn, customer_id, booked, limit)
        if rows:
            return Recommendations("vector", _items(rows, scored=True))
        return self._popular(conn, customer_id, booked, limit)

    def _ask_similar(
        self,
        conn: psycopg.Connection[Any],
        cached: Callable[[], Recommendations | None],
        show_id: UUID,
        limit: int,
    ) -> Recommendations | None:
        try:
            with self._vector_search(conn):
                found = conn.execute(_SHOW_VECTOR, {"s": show_id, "m": self.model}).fetchone()
                if found is None:
                    return None
                vector = found[0]
                rows = [] if vector is None else self._nearest(conn, vector, [show_id], limit)
        except psycopg.Error as error:
            _degraded(conn, "vector query", error)
            return cached() or self._fulltext(conn, show_id, limit)
        if rows:
            return Recommendations("vector", _items(rows, scored=True))
        if vector is None:  # pending an embedding
            return self._fulltext(conn, show_id, limit)
        return self._popular(conn, None, show_id, limit)

    # --- the vector tier ------------------------------------------------------------------

    @contextmanager
    def _vector_search(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """A transaction whose statements are bounded by the vector timeout."""
        use_vectors(conn)  # vectors come and go as pgvector.Vector
        with conn.transaction():
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true),"
                " set_config('hnsw.ef_search', %s, true)",
                (str(self.vector_timeout_ms), str(self.ef_search)),
            )
            if self._iterative_scan is None:
                self._iterative_scan = _pgvector_version(conn) >= ITERATIVE_SCAN_SINCE
            if self._iterative_scan:
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            yield

    def _nearest(
        self, conn: psycopg.Connection[Any], vector: Vector, exclude: Sequence[UUID], limit: int
    ) -> list[Row]:
        """On the HNSW index; exactly if its candidates were filtered below `limit`."""
        params = {"p": vector, "m": self.model, "x": list(exclude), "n": limit}
        rows = conn.execute(_NEAREST, params).fetchall()
        if len(rows) < limit:
            log.debug("recommender: the index found %d of %d shows: exact search", len(rows), limit)
            conn.execute("SET LOCAL enable_indexscan = off")
            rows = conn.execute(_NEAREST, params).fetchall()
        return rows

    def explain_for_customer(self, customer_id: UUID, limit: int) -> str:
        """EXPLAIN ANALYZE of the customer's vector query, as it runs (for benchmarks)."""
        with self.store.connection() as conn, self._vector_search(conn):
            row = conn.execute(_PROFILE, {"c": customer_id, "b": None, "m": self.model}).fetchone()
            mine, profile = row if row is not None else ([], None)
            params = {"p": profile, "m": self.model, "x": list(mine), "n": limit}
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + _NEAREST, params).fetchall()
        return "\n".join(str(r[0]) for r in plan)

    # --- the other tiers ------------------------------------------------------------------

    def _cached(self, key: str, limit: int, exclude: set[UUID]) -> Recommendations | None:
        found = self.cache.get(key) if self.cache is not None else None
        if found is None:
            return None
        try:
            items = [i for i in _decode(found.body) if i.show_id not in exclude]
        except (ValueError, KeyError, TypeError) as error:
            log.warning("recommender: unreadable cached answer %s: %s", key, error)
            return None
        return Recommendations("cache", items[:limit]) if items else None

    @staticmethod
    def _popular(
        conn: psycopg.Connection[Any], customer_id: UUID | None, show_id: UUID | None, limit: int
    ) -> Recommendations:
        rows = conn.execute(_POPULAR, {"c": customer_id, "s": show_id, "n": limit}).fetchall()
        return Recommendations("popular", _items(rows, scored=False))

    def _fulltext(
        self, conn: psycopg.Connection[Any], show_id: UUID, limit: int
    ) -> Recommendations:
        try:
            rows = conn.execute(_FULLTEXT, {"s": show_id, "n": limit}).fetchall()
        except psycopg.Error as error:
            _degraded(conn, "full-text search", error)
            rows = []
        if rows:
            return Recommendations("fulltext", _items(rows, scored=False))
        return self._popular(conn, None, show_id, limit)


def _degraded(conn: psycopg.Connection[Any], what: str, error: psycopg.Error) -> None:
    """A tier failed: log it and let the next one answer, unless the connection is gone."""
    if conn.broken:
        raise error
    slow = isinstance(error, psycopg.errors.QueryCanceled)
    log.warning("recommender: %s %s: %s", what, "too slow" if slow else "failed", error)


def _pgvector_version(conn: psycopg.Connection[Any]) -> tuple[int, ...]:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        return (0,)
    return tuple(int(p) for p in str(row[0]).split(".") if p.isdigit())


def write_pitch(
    recommender: Recommender,
    writer: PitchWriter,
    customer_id: UUID,
    found: Recommendations,
    booked: UUID | None = None,
) -> Pitch:
    """The pitch for these recommendations, each show with its true reason (`reasons`)."""
    liked = recommender.liked_categories(customer_id, booked)
    why = reasons(recommender, customer_id, found, liked, booked)
    shows = [PitchShow(i.title, i.category, i.venue, why[i.show_id]) for i in found.items]
    return writer.write(shows, liked)


def reasons(
    recommender: Recommender,
    customer_id: UUID,
    found: Recommendations,
    liked: Sequence[str],
    booked: UUID | None = None,
) -> dict[UUID, str]:
    """Why each show is recommended, truly: a show of a genre the customer booked "Because you
    enjoyed <genre>"; another one the embeddings chose "Similar to <the booked show nearest
    to it>"; the popular tier's shows (and any show left) "Coming up"."""
    genres = {genre.casefold() for genre in liked}
    why = {
        i.show_id: because_you_enjoyed(i.category)
        for i in found.items
        if i.category.casefold() in genres
    }
    others = [i.show_id for i in found.items if i.show_id not in why]
    if others and found.source in ("vector", "cache"):
        for show_id, title in recommender.closest_booked(customer_id, others, booked).items():
            why[show_id] = f"Similar to {title}"
    return {i.show_id: why.get(i.show_id, COMING_UP) for i in found.items}


@dataclass(frozen=True)
class Suggested:
    """What the booking-confirmed e-mail suggests: shows and a pitch."""

    shows: list[Recommended]
    pitch: str
    source: Source
    pitch_source: Literal["llm", "template"]


class BookingSuggestions:
    """The notifier's `Suggest` port (process_managers/notifier.py): for a booking just
    confirmed, the customer's recommendations and a pitch (the template's if the model fails).
    Errors of PostgreSQL are raised; the notifier bounds the call and sends the e-mail anyway."""

    def __init__(self, recommender: Recommender, writer: PitchWriter, shows: int = 3) -> None:
        self.recommender = recommender
        self.writer = writer
        self.shows = shows

    def __call__(self, customer_id: UUID, show_id: UUID) -> Suggested | None:
        found = self.recommender.for_customer(customer_id, self.shows, booked=show_id)
        if not found.items:
            return None
        pitch = write_pitch(self.recommender, self.writer, customer_id, found, show_id)
        return Suggested(found.items, pitch.text, found.source, pitch.source)
