"""Redis-backed idempotency records and token-bucket rate limits, each degrading safely.

When Redis is unreachable: idempotency lookups report a miss (bookings stay exactly-once anyway,
because a keyed booking's id is derived from its key and the event store rejects a second one),
and rate limits fall back to per-process token buckets instead of failing open or closed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: capacity, refill per second, now (s). Returns {allowed, wait_ms}
_TOKEN_BUCKET = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, wait_ms}
"""


def connect_redis(url: str) -> redis.Redis:
    """Short timeouts: a dead Redis must cost milliseconds, not a hung request."""
    return redis.Redis.from_url(
        url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=5
    )


@dataclass(frozen=True)
class StoredResponse:
    fingerprint: str
    status: int
    body: Any


class IdempotencyRecords:
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self._client = client
        self._ttl = ttl_seconds

    def find(self, key: str) -> StoredResponse | None:
        try:
            raw = self._client.get(f"idem:{key}")
        except redis.RedisError:
            log.warning("redis unavailable: idempotency lookup skipped")
            return None
        if raw is None:
            return None
        data = json.loads(raw)  # type: ignore[arg-type]
        return StoredResponse(data["fingerprint"], int(data["status"]), data["body"])

    def remember(self, key: str, response: StoredResponse) -> None:
        payload = json.dumps(
            {"fingerprint": response.fingerprint, "status": response.status, "body": response.body}
        )
        try:
            self._client.set(f"idem:{key}", payload, ex=self._ttl, nx=True)
        except redis.RedisError:
            log.warning("redis unavailable: idempotent response not stored")


class RateLimiter:
    """Token buckets: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, client: redis.Redis | None, enabled: bool = True) -> None:
        self._client = client
        self._enabled = enabled
        self._script = client.register_script(_TOKEN_BUCKET) if client is not None else None
        self._local: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, bucket: str, per_minute: int) -> float | None:
        """None if allowed, else the seconds to wait before retrying."""
        if not self._enabled:
            return None
        rate = per_minute / 60.0
        if self._script is not None:
            try:
                allowed, wait_ms = self._script(
                    keys=[f"rate:{bucket}"], args=[per_minute, rate, time.time()]
                )
                return None if int(allowed) else max(int(wait_ms) / 1000.0, 0.001)
            except redis.RedisError:
                log.warning("redis unavailable: rate limit %s checked in-process", bucket)
        return self._check_locally(bucket, per_minute, rate)

    def _check_locally(self, bucket: str, capacity: int, rate: float) -> float | None:
        now = time.monotonic()
        with self._lock:
            tokens, at = self._local.get(bucket, (float(capacity), now))
            tokens = min(capacity, tokens + (now - at) * rate)
            if tokens >= 1:
                self._local[bucket] = (tokens - 1, now)
                return None
            self._local[bucket] = (tokens, now)
            return (1 - tokens) / rate
