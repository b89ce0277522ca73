"""The `recommender` follower on a thread of its own, next to the projection runners.

Also retries pending embeddings every `retry_seconds` while the log is idle (survival mode).
"""

from __future__ import annotations

import contextlib
import logging
import threading

import psycopg

from infra.event_store import PostgresEventStore
from recommender.embedder import Embedder, embedder_from_env
from recommender.projection import RecommenderProjection, ensure_schema, recommender_follower

log = logging.getLogger(__name__)


class RecommenderRunner:
    def __init__(
        self,
        store: PostgresEventStore,
        embedder: Embedder | None = None,
        poll_interval: float = 0.25,
        retry_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.embedder = embedder or embedder_from_env()
        self.follower = recommender_follower(store, self.embedder, poll_interval)
        self.retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> RecommenderRunner:
        """Start following (unless this PostgreSQL has no pgvector: then do nothing)."""
        if not ensure_schema(self.store):
            return self
        for name, target in (("recommender", self._follow), ("recommender-retry", self._retry)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _follow(self) -> None:
        """LogFollower.run retries database errors; any other error is logged and retried."""
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self.follower.run(self._stop)
            except Exception:
                log.exception("recommender follower failed; retrying in %.0fs", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _retry(self) -> None:
        projection = RecommenderProjection(self.embedder)
        while not self._stop.wait(self.retry_seconds):
            with contextlib.suppress(psycopg.Error):
                projection.retry_pending(self.store)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
