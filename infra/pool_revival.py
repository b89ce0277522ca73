"""Connection pools back on their feet as soon as PostgreSQL is back.

After an outage the pools hold dead connections, and psycopg_pool replaces them with a growing
reconnect backoff (1, 2, 4 ... s between attempts): measured here, the first booking after a
5 s outage went through 10-13 s after the server was back. So the first dead connection found
starts one probe thread that tries the server every half second and, once it answers, has every
pool check (and replace) its connections at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

PROBE_SECONDS = 0.5


class PoolReviver:
    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._pools: list[ConnectionPool[Any]] = []
        self._lock = threading.Lock()
        self._probe: threading.Thread | None = None
        self._closed = threading.Event()

    def add(self, pool: ConnectionPool[Any]) -> None:
        with self._lock:
            self._pools.append(pool)

    def check(self, conn: psycopg.Connection[Any]) -> None:
        """A pool's `check` callback: psycopg_pool's own test, noting a dead connection."""
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            self.outage_seen()
            raise

    def outage_seen(self) -> None:
        """A connection failed: probe the server until it answers (one probe at a time)."""
        with self._lock:
            if self._closed.is_set() or (self._probe is not None and self._probe.is_alive()):
                return
            self._probe = threading.Thread(target=self._wait_then_revive, daemon=True)
            self._probe.name = "pool-reviver"
            self._probe.start()

    def _wait_then_revive(self) -> None:
        while not self._closed.wait(PROBE_SECONDS):
            try:
                with psycopg.connect(self._conninfo, connect_timeout=2):
                    break
            except psycopg.Error:
                continue
        else:
            return
        log.info("PostgreSQL answers again: checking the connection pools")
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            with contextlib.suppress(Exception):  # a closed pool, or an outage again
                pool.check()

    def close(self) -> None:
        self._closed.set()
