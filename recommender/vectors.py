"""pgvector's psycopg adapters: embeddings go to and come from PostgreSQL as `pgvector.Vector`
(binary, no text formatting or parsing of 256 floats per show)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from pgvector import Vector
from pgvector.psycopg.vector import register_vector_info
from psycopg.types import TypeInfo

__all__ = ["Vector", "use_vectors"]

# The `vector` type's description, per database (its oid is the database's own); fetched once.
_TYPES: dict[tuple[str, int | str, str], TypeInfo] = {}
_LOCK = threading.Lock()


def use_vectors(conn: psycopg.Connection[Any]) -> None:
    """Register pgvector's adapters on `conn` (a pooled connection keeps them; registering
    again is a few dictionary updates). Raises if the database has no pgvector."""
    key = (conn.info.host, conn.info.port, conn.info.dbname)
    with _LOCK:
        info = _TYPES.get(key)
    if info is None:
        info = TypeInfo.fetch(conn, "vector")
        if info is None:
            raise psycopg.ProgrammingError("the vector type (pgvector) is not in the database")
        with _LOCK:
            _TYPES[key] = info
    register_vector_info(conn, info)
