"""Helpers for the recommendation tests: the demo catalog published through the API, and the
recommender's read model given those shows.

The tests of the serving side give the `rec` tables their content directly, as the
recommender's projection leaves it (shows embedded with the offline embedder, or pending), so
that they do not depend on how and when that projection is fed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from infra.event_store import PostgresEventStore
from recommender.embedder import OfflineEmbedder, ShowText, to_pgvector
from recommender.projection import SCHEMA
from tests.e2e.conftest import Api
from tests.e2e.rec_catalog import show_bodies
from tests.e2e.saga_support import wait_until

Shows = dict[str, dict[str, Any]]  # show id -> the body it was scheduled with


def publish_catalog(api: Api, bodies: list[dict[str, Any]] | None = None) -> Shows:
    """The shows (by default the 36 of tests/e2e/rec_catalog.py) scheduled and on sale."""
    return {api.publish_show(body): body for body in (show_bodies() if bodies is None else bodies)}


def by_genre(shows: Shows) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for show_id, body in shows.items():
        found.setdefault(body["category"], []).append(show_id)
    return found


def index_shows(store: PostgresEventStore, shows: Shows, embedded: bool = True) -> None:
    """The shows in `rec.show_vectors`, on sale: embedded with the offline embedder, or
    waiting in `rec.pending_embeddings` after a failed attempt (`embedded=False`)."""
    embedder = OfflineEmbedder()
    rows, pending = [], []
    for show_id, b in shows.items():
        text = ShowText(b["title"], b["description"], b["category"], b["venue"])
        vector = to_pgvector(embedder.embed_one(text)) if embedded else None
        model = embedder.model_name if embedded else None
        starts_at = datetime.fromisoformat(b["starts_at"])
        rows.append((UUID(show_id), *vars(text).values(), starts_at, vector, model))
        pending.append((UUID(show_id), *vars(text).values()))
    with store.connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {SCHEMA}.show_vectors (show_id, title, description, category, venue,"
            " starts_at, embedding, model, on_sale, position)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s::vector, %s, true, 0)"
            " ON CONFLICT (show_id) DO UPDATE SET embedding = excluded.embedding,"
            " model = excluded.model, on_sale = true",
            rows,
        )
        if not embedded:
            cur.executemany(
                f"INSERT INTO {SCHEMA}.pending_embeddings (show_id, title, description,"
                " category, venue, attempts, last_error, next_attempt_at)"
                " VALUES (%s, %s, %s, %s, %s, 1, 'the model is down', now() + interval '1 hour')",
                pending,
            )


def wait_until_in_catalog(store: PostgresEventStore, show_ids: list[str]) -> None:
    """Until the catalog read model (`read.shows`) has every show on sale."""

    def there() -> bool:
        with store.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM read.shows WHERE show_id = ANY(%s) AND status = 'on_sale'",
                ([UUID(s) for s in show_ids],),
            ).fetchone()
        return row is not None and row[0] == len(show_ids)

    wait_until(there, 60, f"{len(show_ids)} shows in the catalog")
