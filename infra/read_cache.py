"""A Redis cache for hot reads, each entry labelled with the read-model position its data was
read at.

A reader that asked for `after=P` is only ever served an entry labelled P or later, and an entry
is only replaced by one at least as recent, so the cache cannot make a client's reads go back
in time. When Redis fails, the cache steps aside for a while (the caller reads uncached)
instead of costing every request a timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

# KEYS[1]: the entry; ARGV: position, body, ttl in ms. Keeps the newer of the two entries.
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local at = tonumber(string.match(current, '^(%d+)|'))
  if at and at > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class CachedRead:
    position: int
    body: bytes


class ReadCache:
    def __init__(
        self,
        client: redis.Redis | None,
        ttl_seconds: float,
        pause_seconds: float = 5.0,
        prefix: str = "tb:read:",
    ) -> None:
        self._client = client
        self._put = client.register_script(_PUT_IF_NEWER) if client is not None else None
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._pause = pause_seconds
        self._prefix = prefix
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self._client is not None and time.monotonic() >= self._paused_until

    def get(self, key: str, at_least: int | None = None) -> CachedRead | None:
        """The entry for `key` if there is one labelled `at_least` or later."""
        if not self.enabled:
            return None
        assert self._client is not None
        try:
            raw = self._client.get(self._prefix + key)
        except redis.RedisError as error:
            self._step_aside(error)
            return None
        found = _parse(raw) if isinstance(raw, bytes) else None
        if found is None or (at_least is not None and found.position < at_least):
            self.misses += 1
            return None
        self.hits += 1
        return found

    def put(self, key: str, position: int, body: bytes) -> None:
        if not self.enabled:
            return
        assert self._put is not None
        try:
            self._put(keys=[self._prefix + key], args=[position, body, self._ttl_ms])
        except redis.RedisError as error:
            self._step_aside(error)

    def _step_aside(self, error: redis.RedisError) -> None:
        with self._lock:
            self.errors += 1
            if time.monotonic() >= self._paused_until:
                log.warning(
                    "redis unavailable (%s): reads go uncached for %.0fs", error, self._pause
                )
            self._paused_until = time.monotonic() + self._pause


def _parse(raw: bytes) -> CachedRead | None:
    position, separator, body = raw.partition(b"|")
    if not separator or not position.isdigit():
        return None
    return CachedRead(int(position), body)
