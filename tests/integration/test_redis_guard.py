"""Rate limits and idempotency records against the real Redis-protocol server."""

from __future__ import annotations

from uuid import uuid4

import pytest

from infra.redis_guard import IdempotencyRecords, RateLimiter, StoredResponse, connect_redis
from ticketblitz.embedded import StackEndpoints
from ticketblitz.http_server import free_port

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


def test_a_token_given_back_can_be_taken_again_and_a_reset_refills(endpoints: StackEndpoints):
    assert endpoints.redis_url is not None
    limiter = RateLimiter(connect_redis(endpoints.redis_url))
    bucket = f"login-pair:{uuid4().hex}"
    assert [limiter.take(bucket, 2, 3600), limiter.take(bucket, 2, 3600)] == [None, None]
    wait = limiter.take(bucket, 2, 3600)
    assert wait is not None and 0 < wait <= 1800  # one token every half hour
    limiter.give_back(bucket, 2)
    assert limiter.take(bucket, 2, 3600) is None
    assert limiter.take(bucket, 2, 3600) is not None
    limiter.reset(bucket)
    assert [limiter.take(bucket, 2, 3600), limiter.take(bucket, 2, 3600)] == [None, None]


def test_known_login_addresses_are_shared_by_api_processes(endpoints: StackEndpoints):
    assert endpoints.redis_url is not None
    one = RateLimiter(connect_redis(endpoints.redis_url))
    other = RateLimiter(connect_redis(endpoints.redis_url))
    account = uuid4().hex
    assert not other.is_known_address(account, "198.51.100.7")
    one.remember_address(account, "198.51.100.7", ttl_seconds=3600)
    assert other.is_known_address(account, "198.51.100.7")
    assert not other.is_known_address(account, "198.51.100.8")
    assert not other.is_known_address(uuid4().hex, "198.51.100.7")


def test_known_addresses_and_limits_fall_back_to_this_process_without_redis():
    dead = RateLimiter(connect_redis(f"redis://127.0.0.1:{free_port()}/0"))
    account = uuid4().hex
    dead.remember_address(account, "198.51.100.7", ttl_seconds=3600)
    assert dead.is_known_address(account, "198.51.100.7")
    assert not dead.is_known_address(account, "198.51.100.8")
    bucket = f"login-account:{account}"
    assert dead.take(bucket, 1, 3600) is None
    assert dead.take(bucket, 1, 3600) is not None
    dead.give_back(bucket, 1)
    assert dead.take(bucket, 1, 3600) is None
