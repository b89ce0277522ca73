"""Queries over the read models. They only use the views of the `read` schema, which always
point at the active generation (projections/generations.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from projections.positions import active_positions

Row = dict[str, Any]

SEAT_MAP_JSON = """
WITH seat_rows AS (
    SELECT section, row_label, min(ordinal) AS first,
           json_agg(json_build_object('seat', seat, 'number', number, 'status', status)
                     ORDER BY ordinal) AS seats
    FROM read.seats WHERE show_id = %(show)s
    GROUP BY section, row_label
), section_rows AS (
    SELECT section, json_agg(json_build_object('label', row_label, 'seats', seats)
                              ORDER BY first) AS rows
    FROM seat_rows GROUP BY section
)
SELECT json_build_object(
    'show_id', %(show)s::uuid,
    'position', %(position)s::bigint,
    'sections', json_agg(json_build_object(
        'code', s.section, 'kind', s.kind, 'tier', s.tier, 'price_cents', s.price_cents,
        'capacity', s.capacity, 'held', s.held, 'sold', s.sold, 'available', s.available,
        'rows', coalesce(r.rows, '[]'::json)) ORDER BY s.ordinal))::text
FROM read.show_sections s LEFT JOIN section_rows r USING (section)
WHERE s.show_id = %(show)s
  AND EXISTS (SELECT 1 FROM read.shows WHERE show_id = %(show)s)  -- not deleted
HAVING count(*) > 0
"""


@dataclass(frozen=True)
class ShowFilter:
    text: str | None = None
    category: str | None = None
    starts_from: datetime | None = None
    starts_before: datetime | None = None


class ReadModels:
    """Read-only access to the read models through a pool of its own."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self._pool = pool

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Row]]:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            yield cur

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of this pool, for queries kept beside their read model (reports)."""
        with self._pool.connection() as conn:
            yield conn

    def positions(self) -> dict[str, int]:
        with self._pool.connection() as conn:
            return active_positions(conn)

    def shows(
        self, where: ShowFilter, limit: int, after: tuple[datetime, UUID] | None = None
    ) -> list[Row]:
        """Shows by start time (then id), at most `limit`, after a keyset cursor."""
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        if where.text:
            conditions.append(sql.SQL("search @@ websearch_to_tsquery('english', %s)"))
            params.append(where.text)
        if where.category:
            conditions.append(sql.SQL("lower(category) = lower(%s)"))
            params.append(where.category)
        if where.starts_from is not None:
            conditions.append(sql.SQL("starts_at >= %s"))
            params.append(where.starts_from)
        if where.starts_before is not None:
            conditions.append(sql.SQL("starts_at < %s"))
            params.append(where.starts_before)
        if after is not None:
            conditions.append(sql.SQL("(starts_at, show_id) > (%s, %s)"))
            params.extend(after)
        query = sql.SQL(
            "SELECT show_id, title, category, venue, starts_at, status, currency, price_tiers "
            "FROM read.shows {} ORDER BY starts_at, show_id LIMIT %s"
        ).format(
            sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        )
        with self._cursor() as cur:
            return cur.execute(query, [*params, limit]).fetchall()

    def show(self, show_id: UUID) -> tuple[Row, list[Row]] | None:
        """A show and the availability of its sections (None if the catalog does not know it)."""
        with self._cursor() as cur:
            show = cur.execute(
                "SELECT show_id, title, description, category, venue, starts_at, status, "
                "cancellation_reason, currency, price_tiers, organizer_id, sale_opens_at, "
                "sale_closes_at, time_zone, transfers_allowed, presale_opens_at, "
                "queue_admits_per_minute FROM read.shows "
                "WHERE show_id = %s",
                (show_id,),
            ).fetchone()
            if show is None:
                return None
            return show, self._sections(cur, show_id)

    def seat_map(
        self, show_id: UUID
    ) -> tuple[list[Row], list[tuple[str, str, str, int, str]]] | None:
        """The sections of a show and its seats as (section, row label, seat, number, status)
        in map order (None if the seat map does not know the show)."""
        with self._cursor() as cur:
            sections = self._sections(cur, show_id)
            if not sections:
                return None
            cur.execute(
                "SELECT section, row_label, seat, number, status FROM read.seats "
                "WHERE show_id = %s ORDER BY ordinal",
                (show_id,),
            )
            seats = [
                (r["section"], r["row_label"], r["seat"], r["number"], r["status"]) for r in cur
            ]
            return sections, seats

    def seat_map_json(self, show_id: UUID, position: int) -> bytes | None:
        """The seat map as the query API answers it, built as JSON by PostgreSQL in one
        statement (one snapshot; no Python object per seat, which matters for big venues)."""
        with self._pool.connection() as conn:
            row = conn.execute(SEAT_MAP_JSON, {"show": show_id, "position": position}).fetchone()
        return None if row is None else str(row[0]).encode()  # text, not parsed

    @staticmethod
    def _sections(cur: psycopg.Cursor[Row], show_id: UUID) -> list[Row]:
        return cur.execute(
            "SELECT section, kind, tier, price_cents, capacity, held, sold, available "
            "FROM read.show_sections WHERE show_id = %s ORDER BY ordinal",
            (show_id,),
        ).fetchall()

    def booking(self, booking_id: UUID) -> Row | None:
        with self._cursor() as cur:
            return cur.execute(
                "SELECT * FROM read.bookings WHERE booking_id = %s", (booking_id,)
            ).fetchone()

    def bookings_of(
        self, customer_id: UUID, limit: int, before: tuple[datetime, UUID] | None = None
    ) -> list[Row]:
        """A customer's bookings, newest first, at most `limit`, before a keyset cursor."""
        keyset = sql.SQL("AND (placed_at, booking_id) < (%s, %s)") if before else sql.SQL("")
        query = sql.SQL(
            "SELECT * FROM read.bookings WHERE customer_id = %s {} "
            "ORDER BY placed_at DESC, booking_id DESC LIMIT %s"
        ).format(keyset)
        with self._cursor() as cur:
            return cur.execute(query, [customer_id, *(before or ()), limit]).fetchall()

    def show_sales(self, show_id: UUID) -> Row | None:
        with self._cursor() as cur:
            return cur.execute(
                "SELECT * FROM read.show_sales WHERE show_id = %s", (show_id,)
            ).fetchone()
