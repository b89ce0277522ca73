"""Attacks on the waiting room: guessed and hostile queue tokens, someone else's token, one
address joining for many accounts (429), forged admissions (unsigned, signed with the access
tokens' key, hostile text), joining without an account. The room is an app on the session's
servers whose clock the tests set and whose join limit is low; it believes X-Forwarded-For from
loopback so each test has an address (a bucket) of its own."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from http_shell.problems import PROBLEM_JSON, TYPE_BASE
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import Api
from tests.e2e.queue_support import (
    SetClock,
    auth,
    book,
    clock_fixtures,
    opens_at,
    queued_show,
    room_fixture,
)

pytestmark = pytest.mark.integration

JOINS_PER_MINUTE = 5

clock, real_time_after = clock_fixtures()
room = room_fixture(
    "waiting-room-attacks",
    rate_limit_queue_join_per_minute=JOINS_PER_MINUTE,
    trusted_proxies="127.0.0.1/32,::1/128",
)


def from_address(fan: dict[str, str], address: str) -> dict[str, str]:
    return {**auth(fan), "X-Forwarded-For": address}


def test_one_address_joining_for_many_accounts_is_slowed_down(api: Api, room: Api):
    show_id = queued_show(api)
    fans = [api.new_customer() for _ in range(JOINS_PER_MINUTE + 3)]
    answers = [
        room.http.post(f"/shows/{show_id}/queue", headers=from_address(f, "198.51.100.7"))
        for f in fans
    ]
    codes = [r.status_code for r in answers]
    assert codes[:JOINS_PER_MINUTE] == [201] * JOINS_PER_MINUTE
    refused = answers[-1]
    assert refused.status_code == 429, codes
    assert refused.json()["type"] == TYPE_BASE + "rate-limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # Another address is not held back by it.
    r = room.http.post(f"/shows/{show_id}/queue", headers=from_address(fans[-1], "198.51.100.8"))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "token",
    [
        secrets.token_urlsafe(16),  # well-formed, never handed out
        "A" * 22,
        "..%2F..%2Fetc%2Fpasswd",
        "x" * 5000,
        "%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00",
        "queue:{x}:accounts",
        "' OR 1=1 --",
        "%E2%80%AEtoken-reversed-0000",
        "*",
    ],
    ids=["guessed", "uniform", "traversal", "huge", "nul", "redis-key", "sql", "bidi", "glob"],
)
def test_guessed_or_hostile_tokens_find_nothing(api: Api, room: Api, token: str):
    show_id = queued_show(api)
    fan = api.new_customer()
    assert room.http.post(f"/shows/{show_id}/queue", headers=from_address(fan, "198.51.100.20"))
    r = room.http.get(f"/shows/{show_id}/queue/{token}", headers=auth(fan))
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)


def test_someone_elses_token_is_not_found_and_joining_needs_an_account(api: Api, room: Api):
    show_id = queued_show(api)
    ann, bob = api.new_customer(), api.new_customer()
    r = room.http.post(f"/shows/{show_id}/queue", headers=from_address(ann, "198.51.100.30"))
    token = r.json()["token"]
    assert room.http.get(f"/shows/{show_id}/queue/{token}", headers=auth(ann)).status_code == 200
    r = room.http.get(f"/shows/{show_id}/queue/{token}", headers=auth(bob))
    assert r.status_code == 404, r.text
    # Bob joining gets his own token, never Ann's.
    r = room.http.post(f"/shows/{show_id}/queue", headers=from_address(bob, "198.51.100.31"))
    assert r.status_code == 201 and r.json()["token"] != token
    r = room.http.post(f"/shows/{show_id}/queue")
    assert r.status_code == 401, r.text
    r = room.http.get(f"/shows/{show_id}/queue/{token}")
    assert r.status_code == 401, r.text


def test_forged_admissions_are_refused(api: Api, room: Api, clock: SetClock):
    show_id = queued_show(api)
    fan = api.new_customer()
    clock.at = opens_at(api, show_id) + timedelta(minutes=1)
    try:
        now = int(datetime.now(UTC).timestamp())
        claims = {
            "iss": "ticketblitz-waiting-room",
            "aud": "ticketblitz-admission",
            "sub": fan["account_id"],
            "show": show_id,
            "iat": now,
            "exp": now + 10**8,
        }
        unsigned = jwt.encode(claims, key="", algorithm="none")
        with_access_key = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
        guessed_key = jwt.encode(claims, "0" * 64, algorithm="HS256")
        for forged in (unsigned, with_access_key, guessed_key, "a.b.c", "x"):
            r = book(room, fan, show_id, forged)
            assert r.status_code == 403, (forged, r.text)
            assert r.json()["type"] == TYPE_BASE + "queue-required"
        for hostile in ("a b", "<script>", "x" * 2001, "\u202eadmission", ""):
            r = book(room, fan, show_id, hostile)
            assert r.status_code == 422, (hostile, r.text)
    finally:
        clock.at = None
