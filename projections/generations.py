"""Generations of read models, for blue/green rebuilds.

Each projection's tables live in the schema of one generation (`read_catalog_g2`, ...), with
its own follower name (`catalog@g2`). `read.generations` says which generation is `active`
(at most one per projection), which one a rebuild is `building` and which were `retired`.
Queries only ever use the views in the `read` schema (`read.shows`, ...), and those point at the
active generation's tables: switching generations replaces the views and the registry rows in
one transaction, so a reader sees either the old tables or the new ones, never a mix or nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from infra.log_follower import POSITIONS_DDL, ensure_failure_tables
from projections.base import (
    ACTIVE,
    BUILDING,
    READ_SCHEMA,
    RETIRED,
    Projection,
    follower_name,
    schema_name,
)

log = logging.getLogger(__name__)

REGISTRY_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {READ_SCHEMA}",
    f"""
    CREATE TABLE IF NOT EXISTS {READ_SCHEMA}.generations (
        projection text NOT NULL,
        generation integer NOT NULL,
        follower text NOT NULL UNIQUE,
        state text NOT NULL CHECK (state IN ('{ACTIVE}', '{BUILDING}', '{RETIRED}')),
        created_at timestamptz NOT NULL DEFAULT now(),
        activated_at timestamptz,
        retired_at timestamptz,
        PRIMARY KEY (projection, generation)
    )
    """,
    f"ALTER TABLE {READ_SCHEMA}.generations ADD COLUMN IF NOT EXISTS fingerprint text",
    f"CREATE UNIQUE INDEX IF NOT EXISTS generations_one_active ON {READ_SCHEMA}.generations "
    f"(projection) WHERE state = '{ACTIVE}'",
    f"CREATE UNIQUE INDEX IF NOT EXISTS generations_one_building ON {READ_SCHEMA}.generations "
    f"(projection) WHERE state = '{BUILDING}'",
)


def advisory_key(purpose: str) -> int:
    digest = hashlib.blake2b(f"read-side:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def ensure_read_side(conn: psycopg.Connection[Any], kinds: Iterable[type[Projection]]) -> None:
    """Create the registry and, for each projection without one, an empty active generation
    with its views. Idempotent and safe to run from several processes at once."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("setup"),))
        for statement in REGISTRY_DDL:
            conn.execute(statement)
        conn.execute(POSITIONS_DDL)
        ensure_failure_tables(conn)
        for kind in kinds:
            active = generation_in(conn, kind.kind, ACTIVE)
            if active is None:
                projection = _new_generation(conn, kind, ACTIVE)
                point_views(conn, projection)
                continue
            if any(_missing_view(conn, view) for view in kind.views):
                point_views(conn, kind(active))
            if stale(conn, kind):
                log.warning(
                    "read model %s was built by another version of its projection: "
                    "run `ticketblitz projections rebuild %s`",
                    kind.kind,
                    kind.kind,
                )


def stale(conn: psycopg.Connection[Any], kind: type[Projection]) -> bool:
    """Whether the active generation was built with another shape of the read model."""
    row = conn.execute(
        "SELECT fingerprint FROM read.generations WHERE projection = %s AND state = %s",
        (kind.kind, ACTIVE),
    ).fetchone()
    return row is not None and row[0] != kind.fingerprint()


def generation_in(conn: psycopg.Connection[Any], projection: str, state: str) -> int | None:
    row = conn.execute(
        "SELECT generation FROM read.generations WHERE projection = %s AND state = %s",
        (projection, state),
    ).fetchone()
    return None if row is None else int(row[0])


def active_generations(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT projection, generation FROM read.generations WHERE state = %s", (ACTIVE,)
    ).fetchall()
    return {projection: int(generation) for projection, generation in rows}


def start_building(
    conn: psycopg.Connection[Any], kind: type[Projection]
) -> tuple[Projection, bool]:
    """The generation a rebuild fills: the unfinished one if there is one (resumed: True),
    else a new, empty one."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("setup"),))
        building = generation_in(conn, kind.kind, BUILDING)
        if building is not None:
            projection = kind(building)
            projection.create_tables(conn)
            return projection, True
        return _new_generation(conn, kind, BUILDING), False


def _new_generation(
    conn: psycopg.Connection[Any], kind: type[Projection], state: str
) -> Projection:
    row = conn.execute(
        "SELECT coalesce(max(generation), 0) + 1 FROM read.generations WHERE projection = %s",
        (kind.kind,),
    ).fetchone()
    assert row is not None
    projection = kind(int(row[0]))
    conn.execute(
        "INSERT INTO read.generations "
        "(projection, generation, follower, state, activated_at, fingerprint) "
        "VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END, %s)",
        (
            kind.kind,
            projection.generation,
            projection.name,
            state,
            state == ACTIVE,
            kind.fingerprint(),
        ),
    )
    projection.create_tables(conn)
    conn.execute(
        "INSERT INTO follower_positions (name) VALUES (%s) ON CONFLICT (name) DO UPDATE "
        "SET position = 0, event_time = NULL, updated_at = now()",
        (projection.name,),
    )
    return projection


def point_views(conn: psycopg.Connection[Any], projection: Projection) -> None:
    """(Re)create the projection's views in the read schema over this generation's tables."""
    for view, table in projection.views.items():
        target = sql.Identifier(READ_SCHEMA, view)
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(target))
        conn.execute(
            sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(
                target, sql.Identifier(projection.schema, table)
            )
        )


def _missing_view(conn: psycopg.Connection[Any], view: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f"{READ_SCHEMA}.{view}",)).fetchone()
    return row is None or row[0] is None


def activate(conn: psycopg.Connection[Any], projection: Projection) -> int | None:
    """Inside the caller's transaction: make this generation the active one and retire the
    one it replaces (returned, to be dropped once the switch has committed)."""
    old = generation_in(conn, projection.kind, ACTIVE)
    conn.execute(
        "UPDATE read.generations SET state = %s, retired_at = now() "
        "WHERE projection = %s AND state = %s",
        (RETIRED, projection.kind, ACTIVE),
    )
    conn.execute(
        "UPDATE read.generations SET state = %s, activated_at = now() "
        "WHERE projection = %s AND generation = %s",
        (ACTIVE, projection.kind, projection.generation),
    )
    point_views(conn, projection)
    return old


def drop_retired(conn: psycopg.Connection[Any], projection: str) -> list[int]:
    """Drop the tables, follower rows and registry rows of retired generations (a crash
    between a switch and its clean-up may have left some).

    The follower row goes first: a runner still on that generation locks its row before it
    writes to its tables, so taking the row first keeps the lock order and avoids a deadlock.
    """
    rows = conn.execute(
        "SELECT generation FROM read.generations WHERE projection = %s AND state = %s",
        (projection, RETIRED),
    ).fetchall()
    dropped = []
    for (generation,) in rows:
        with conn.transaction():
            conn.execute(
                "DELETE FROM follower_positions WHERE name = %s",
                (follower_name(projection, generation),),
            )
            conn.execute(
                "DELETE FROM follower_failures WHERE name = %s",
                (follower_name(projection, generation),),
            )
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema_name(projection, generation))
                )
            )
            conn.execute(
                "DELETE FROM read.generations WHERE projection = %s AND generation = %s",
                (projection, generation),
            )
        dropped.append(int(generation))
    return dropped
