"""Blob stores (commands.ports.BlobStore): the embedded default keeps blobs in PostgreSQL, in
the event store's database (schema `blobs`); `TICKETBLITZ_BLOB_STORE=s3` selects the
S3-compatible adapter (infra/s3_blobs.py) that compose.yaml uses with MinIO."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from commands.errors import BlobStoreUnavailableError
from commands.ports import BlobStore, Connections
from infra.settings import Settings

log = logging.getLogger(__name__)

BLOBS_SCHEMA = "blobs"

BLOBS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {BLOBS_SCHEMA};
CREATE TABLE IF NOT EXISTS {BLOBS_SCHEMA}.objects (
    key text PRIMARY KEY,
    content_type text NOT NULL,
    data bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
)
"""
# Processes starting together would race on CREATE SCHEMA IF NOT EXISTS (a unique violation).
SETUP_LOCK = 0x0B10B5


class PostgresBlobStore:
    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    def setup(self) -> None:
        """Create the blob table where missing (idempotent)."""
        with self._connections.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
            conn.execute(BLOBS_DDL)  # type: ignore[arg-type]

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._run(
            f"INSERT INTO {BLOBS_SCHEMA}.objects (key, content_type, data) VALUES (%s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET content_type = EXCLUDED.content_type, "
            "data = EXCLUDED.data, stored_at = now()",
            (key, content_type, data),
        )

    def get(self, key: str) -> tuple[bytes, str] | None:
        rows = self._run(
            f"SELECT data, content_type FROM {BLOBS_SCHEMA}.objects WHERE key = %s", (key,)
        )
        return None if not rows else (bytes(rows[0][0]), str(rows[0][1]))

    def delete(self, key: str) -> None:
        self._run(f"DELETE FROM {BLOBS_SCHEMA}.objects WHERE key = %s", (key,))

    def _run(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._connections.connection() as conn:
                cursor = conn.execute(query, params)  # type: ignore[arg-type]
                return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as error:
            raise BlobStoreUnavailableError(str(error)) from error


def blob_store_for(settings: Settings, connections: Connections) -> BlobStore:
    """The blob store the settings name, set up (its table or bucket exists). An object
    store that cannot be reached yet does not stop the start: posters answer their
    placeholder, uploads a 503, and the bucket is created on the first upload."""
    if settings.blob_store == "s3":
        from infra.s3_blobs import S3BlobStore  # boto3 loads only where it is used

        s3 = S3BlobStore.from_settings(settings)
        try:
            s3.setup()
        except BlobStoreUnavailableError as error:
            log.warning("the object store is not reachable yet: %s", error)
        return s3
    postgres = PostgresBlobStore(connections)
    postgres.setup()
    return postgres
