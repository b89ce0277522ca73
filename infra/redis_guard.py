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
from collections import OrderedDict
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


# KEYS[1]: the bucket; ARGV: capacity. A token given back (a login that succeeded after all).
_GIVE_BACK = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens then
  redis.call('HSET', KEYS[1], 'tokens', math.min(tonumber(ARGV[1]), tokens + 1))
end
return 0
"""

# Addresses remembered per account (login throttling); older ones are forgotten first.
KNOWN_ADDRESSES_PER_ACCOUNT = 32
_LOCAL_KNOWN_ADDRESSES = 100_000


class RateLimiter:
    """Token buckets: `per_minute` requests a minute, bursts up to the same number. Also the
    addresses each account logged in from, which login throttling trusts more."""

    def __init__(self, client: redis.Redis | None, enabled: bool = True) -> None:
        self._client = client
        self._enabled = enabled
        self._script = client.register_script(_TOKEN_BUCKET) if client is not None else None
        self._give_back = client.register_script(_GIVE_BACK) if client is not None else None
        self._local: dict[str, tuple[float, float]] = {}
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, bucket: str, per_minute: int) -> float | None:
        """None if allowed, else the seconds to wait before retrying."""
        return self.take(bucket, per_minute, 60.0)

    def take(self, bucket: str, capacity: int, per_seconds: float) -> float | None:
        """Take a token from a bucket of `capacity` refilled over `per_seconds`: None if
        allowed, else the seconds to wait before retrying."""
        if not self._enabled:
            return None
        rate = capacity / per_seconds
        if self._script is not None:
            try:
                allowed, wait_ms = self._script(
                    keys=[f"rate:{bucket}"], args=[capacity, rate, time.time()]
                )
                return None if int(allowed) else max(int(wait_ms) / 1000.0, 0.001)
            except redis.RedisError:
                log.warning("redis unavailable: rate limit %s checked in-process", bucket)
        return self._check_locally(bucket, capacity, rate)

    def give_back(self, bucket: str, capacity: int) -> None:
        """Return a token taken by `take` (never above `capacity`)."""
        if not self._enabled:
            return
        if self._give_back is not None:
            try:
                self._give_back(keys=[f"rate:{bucket}"], args=[capacity])
            except redis.RedisError:
                log.warning("redis unavailable: rate limit %s refunded in-process", bucket)
        with self._lock:
            if bucket in self._local:
                tokens, at = self._local[bucket]
                self._local[bucket] = (min(float(capacity), tokens + 1), at)

    def reset(self, bucket: str) -> None:
        """Refill a bucket (a login that succeeded clears its pair's failures)."""
        if self._client is not None:
            try:
                self._client.delete(f"rate:{bucket}")
            except redis.RedisError:
                log.warning("redis unavailable: rate limit %s reset in-process", bucket)
        with self._lock:
            self._local.pop(bucket, None)

    def remember_address(self, account: str, address: str, ttl_seconds: float) -> None:
        """`account` logged in successfully from `address`: known for `ttl_seconds` more.
        Kept in Redis (shared by every API process) and in this process, which answers
        alone while Redis is down."""
        expires = time.time() + ttl_seconds
        if self._client is not None:
            key = f"login-known:{account}"
            try:
                with self._client.pipeline(transaction=False) as pipe:
                    pipe.zadd(key, {address: expires})
                    pipe.zremrangebyscore(key, "-inf", time.time())
                    pipe.zremrangebyrank(key, 0, -KNOWN_ADDRESSES_PER_ACCOUNT - 1)
                    pipe.expire(key, max(1, int(ttl_seconds)))
                    pipe.execute()
            except redis.RedisError:
                log.warning("redis unavailable: known login address kept in-process")
        with self._lock:
            self._known[(account, address)] = expires
            self._known.move_to_end((account, address))
            while len(self._known) > _LOCAL_KNOWN_ADDRESSES:
                self._known.popitem(last=False)

    def is_known_address(self, account: str, address: str) -> bool:
        now = time.time()
        with self._lock:
            if self._known.get((account, address), 0.0) > now:
                return True
        if self._client is None:
            return False
        try:
            score = self._client.zscore(f"login-known:{account}", address)
        except redis.RedisError:
            log.warning("redis unavailable: known login addresses of this process only")
            return False
        return score is not None and float(score) > now  # type: ignore[arg-type]

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
