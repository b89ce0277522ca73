"""Rate limits and idempotency records against the real Redis-protocol server."""

from __future__ import annotations

from uuid import uuid4

import pytest

from infra.embedded import StackEndpoints
from infra.redis_guard import IdempotencyRecords, RateLimiter, StoredResponse, connect_redis

pytestmark = pytest.mark.integration


def test_api_processes_share_one_token_bucket(endpoints: StackEndpoints):
    assert endpoints.redis_url is not None
    bucket = f"login:{uuid4().hex}"
    one = RateLimiter(connect_redis(endpoints.redis_url))
    other = RateLimiter(connect_redis(endpoints.redis_url))
    assert [one.check(bucket, 3), other.check(bucket, 3), one.check(bucket, 3)] == [None] * 3
    wait = other.check(bucket, 3)
    assert wait is not None and 0 < wait <= 20  # one token comes back every 20 s


def test_disabled_limits_always_allow(endpoints: StackEndpoints):
    assert endpoints.redis_url is not None
    limiter = RateLimiter(connect_redis(endpoints.redis_url), enabled=False)
    assert all(limiter.check("x", 1) is None for _ in range(5))


def test_an_idempotent_answer_is_kept_once(endpoints: StackEndpoints):
    assert endpoints.redis_url is not None
    records = IdempotencyRecords(connect_redis(endpoints.redis_url), ttl_seconds=60)
    key = uuid4().hex
    assert records.find(key) is None
    records.remember(key, StoredResponse("f1", 201, {"booking_id": "b1"}))
    records.remember(key, StoredResponse("f2", 201, {"booking_id": "b2"}))  # first one wins
    assert records.find(key) == StoredResponse("f1", 201, {"booking_id": "b1"})
