"""Recommendations from the `rec` read model: nearest shows by cosine distance (`<=>`), or the
popular ones when there is nothing to be near to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from infra.event_store import PostgresEventStore
from recommender.projection import SCHEMA

Source = Literal["vector", "popular"]

_COLUMNS = "v.show_id, v.title, v.category, v.venue, v.starts_at"
_UPCOMING = "v.on_sale AND v.starts_at > now()"


@dataclass(frozen=True)
class Recommended:
    show_id: UUID
    title: str
    category: str
    venue: str
    starts_at: datetime
    score: float | None  # cosine similarity (vector answers only)


@dataclass(frozen=True)
class Recommendations:
    source: Source
    items: list[Recommended]


def _items(rows: list[tuple[Any, ...]], scored: bool) -> list[Recommended]:
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


class Recommender:
    """Read-only queries (the `recommender` follower writes the tables)."""

    def __init__(self, store: PostgresEventStore, model: str) -> None:
        self.store = store
        self.model = model

    def for_customer(self, customer_id: UUID, limit: int) -> Recommendations:
        with self.store.connection() as conn:
            rows = conn.execute(
                f"""
                WITH mine AS (
                    SELECT show_id FROM {SCHEMA}.customer_shows WHERE customer_id = %(c)s
                ), profile AS (
                    SELECT avg(v.embedding) AS e FROM {SCHEMA}.show_vectors v
                    JOIN mine USING (show_id)
                    WHERE v.embedding IS NOT NULL AND v.model = %(m)s
                )
                SELECT {_COLUMNS}, 1 - (v.embedding <=> p.e)
                FROM {SCHEMA}.show_vectors v, profile p
                WHERE p.e IS NOT NULL AND v.model = %(m)s AND {_UPCOMING}
                  AND v.show_id NOT IN (SELECT show_id FROM mine)
                ORDER BY v.embedding <=> p.e, v.show_id
                LIMIT %(n)s
                """,
                {"c": customer_id, "m": self.model, "n": limit},
            ).fetchall()
            if rows:
                return Recommendations("vector", _items(rows, scored=True))
            return Recommendations("popular", self._popular(conn, customer_id, None, limit))

    def liked_categories(self, customer_id: UUID) -> list[str]:
        """The genres of the shows the customer booked, most booked first."""
        with self.store.connection() as conn:
            rows = conn.execute(
                f"SELECT v.category FROM {SCHEMA}.customer_shows c"
                f" JOIN {SCHEMA}.show_vectors v USING (show_id) WHERE c.customer_id = %s"
                " GROUP BY v.category ORDER BY count(*) DESC, v.category LIMIT 3",
                (customer_id,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def similar(self, show_id: UUID, limit: int) -> Recommendations | None:
        """Shows like this one; None if the show is unknown."""
        with self.store.connection() as conn:
            found = conn.execute(
                f"SELECT embedding IS NOT NULL AND model = %s FROM {SCHEMA}.show_vectors"
                " WHERE show_id = %s",
                (self.model, show_id),
            ).fetchone()
            if found is None:
                return None
            if found[0]:
                rows = conn.execute(
                    f"""
                    SELECT {_COLUMNS}, 1 - (v.embedding <=> s.embedding)
                    FROM {SCHEMA}.show_vectors v, {SCHEMA}.show_vectors s
                    WHERE s.show_id = %(s)s AND v.show_id <> s.show_id
                      AND v.model = %(m)s AND {_UPCOMING}
                    ORDER BY v.embedding <=> s.embedding, v.show_id
                    LIMIT %(n)s
                    """,
                    {"s": show_id, "m": self.model, "n": limit},
                ).fetchall()
                if rows:
                    return Recommendations("vector", _items(rows, scored=True))
            return Recommendations("popular", self._popular(conn, None, show_id, limit))

    @staticmethod
    def _popular(
        conn: Any, customer_id: UUID | None, show_id: UUID | None, limit: int
    ) -> list[Recommended]:
        rows = conn.execute(
            f"""
            SELECT {_COLUMNS} FROM {SCHEMA}.show_vectors v
            LEFT JOIN {SCHEMA}.show_sales s USING (show_id)
            WHERE {_UPCOMING} AND v.show_id IS DISTINCT FROM %(s)s
              AND v.show_id NOT IN (
                  SELECT show_id FROM {SCHEMA}.customer_shows WHERE customer_id = %(c)s)
            ORDER BY coalesce(s.confirmed, 0) DESC, v.starts_at, v.show_id
            LIMIT %(n)s
            """,
            {"c": customer_id, "s": show_id, "n": limit},
        ).fetchall()
        return _items(rows, scored=False)
