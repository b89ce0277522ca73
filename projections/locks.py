"""Session advisory locks: one process at a time does a job (a rebuild, the recommender's
consumer); the others find the lock taken and give up or stand by."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg


@contextmanager
def try_advisory_lock(conn: psycopg.Connection[Any], key: int) -> Iterator[bool]:
    """Try the session advisory lock `key` on `conn` without waiting; yields whether it was
    taken, and releases it after the block (the connection goes back to a pool: it must not
    keep the lock)."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    taken = bool(row and row[0])
    try:
        yield taken
    finally:
        if taken:
            with suppress(psycopg.Error):  # a broken connection holds no lock any more
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
