"""The consumer's offsets, kept in PostgreSQL (`{schema}.consumer_offsets`) and moved in the
transaction that applies the records read: exactly once without Kafka's offset commits.

Each row holds the next offset of one topic-partition and a digest of the record before it,
by which runner.py recognises a topic whose history changed under it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True)
class Offset:
    """The stored position of one topic-partition: the next offset to read, and a digest of
    the record just before it (None at offset 0)."""

    next_offset: int
    last_digest: bytes | None = None


class OffsetsMovedError(Exception):
    """The stored offsets are not where this consumer left them (another consumer, or a
    rebuild, moved them): the batch was rolled back; re-read from the stored offsets."""


def load_offsets(
    conn: psycopg.Connection[Any], schema: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], Offset]:
    """The stored offset of each partition (a new partition starts at 0)."""
    wanted = list(partitions)
    with conn.transaction():
        conn.execute(
            f"INSERT INTO {schema}.consumer_offsets (topic, partition)"
            " SELECT * FROM unnest(%s::text[], %s::int[]) ON CONFLICT DO NOTHING",
            ([t for t, _ in wanted], [p for _, p in wanted]),
        )
        rows = conn.execute(
            f"SELECT topic, partition, next_offset, last_digest FROM {schema}.consumer_offsets"
        ).fetchall()
    stored = {(t, p): Offset(int(n), d) for t, p, n, d in rows}
    return {tp: stored[tp] for tp in wanted}


def save_offsets(
    conn: psycopg.Connection[Any],
    schema: str,
    expected: Mapping[tuple[str, int], int],
    reached: Mapping[tuple[str, int], Offset],
) -> None:
    """Move each partition from `expected` to `reached`, in the caller's transaction;
    OffsetsMovedError if one of them is not at `expected`."""
    keys = list(reached)
    rows = conn.execute(
        f"SELECT topic, partition, next_offset FROM {schema}.consumer_offsets"
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
            f"UPDATE {schema}.consumer_offsets SET next_offset = %s, last_digest = %s,"
            " updated_at = now() WHERE topic = %s AND partition = %s",
            [(o.next_offset, o.last_digest, t, p) for (t, p), o in reached.items()],
        )
