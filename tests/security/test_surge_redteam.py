"""Red team of the on-sale surge (issue 19): the waiting room and the hot reads (ETag/304),
attacked as a scalper, a fraudster and a curious fan would, each attack asserting the safe
answer, against the real servers.

"The room" is an app on the session's servers with a clock the tests set, a low join limit per
address, and loopback as its trusted proxy (so X-Forwarded-For is what a proxy appended). The
hot reads are the session app's (its listener follows the session's read models)."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import httpx
import jwt
import pytest

from http_shell.deps import limit_key, resolve_client_address
from http_shell.problems import PROBLEM_JSON, TYPE_BASE
from infra.waiting_room import derived_key
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import Api
from tests.e2e.queue_support import (
    SetClock,
    assert_queue_required,
    auth,
    book,
    clock_fixtures,
    opens_at,
    queued_show,
    room_fixture,
    status_of,
)
from tests.e2e.saga_support import wait_until
from tests.e2e.test_query_api import head

pytestmark = pytest.mark.integration

JOINS_PER_MINUTE = 4
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


clock, real_time_after = clock_fixtures()
room = room_fixture(
    "surge-redteam",
    rate_limit_queue_join_per_minute=JOINS_PER_MINUTE,
    trusted_proxies="127.0.0.1/32,::1/128",
)


def address() -> str:
    """A fresh client address (a rate-limit bucket of its own), in TEST-NET-2/3."""
    return f"198.51.{secrets.randbelow(2) + 100}.{secrets.randbelow(254) + 1}"


def joined(room: Api, show_id: str, fan: dict[str, str], at: str) -> httpx.Response:
    return room.http.post(f"/shows/{show_id}/queue", headers={**auth(fan), "X-Forwarded-For": at})


def admitted(room: Api, show_id: str, fan: dict[str, str], clock: SetClock) -> str:
    """The fan joins an hour before the opening and, 5 minutes after it (300 let in), gets
    an admission."""
    opens = opens_at(room, show_id)
    clock.at = opens - timedelta(hours=1)
    token = joined(room, show_id, fan, address()).json()["token"]
    clock.at = opens + timedelta(minutes=5)
    state = status_of(room, show_id, fan, token)
    assert state["admitted"] and state["admission"], state
    admission: str = state["admission"]
    return admission


def assert_problem(r: httpx.Response, status: int, kind: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers
    assert r.json()["type"] == TYPE_BASE + kind, r.text


# --- the per-address join limit -------------------------------------------------------------


def test_forged_x_forwarded_for_hops_do_not_dodge_the_join_limit(api: Api, room: Api):
    """Behind the trusted proxy, the client writes whatever it likes to the left of the hop
    the proxy appends: a new forged hop per request, a second header line, IPv6 addresses of
    the same /64, the same address with a port or IPv4-mapped, or a garbage hop: one bucket."""
    show_id = queued_show(api)
    real = address()
    v6 = f"2001:db8:{secrets.randbelow(0xFFFF):x}:7"
    spellings = [
        {"X-Forwarded-For": f"203.0.113.{n}, {real}"} for n in range(1, JOINS_PER_MINUTE + 1)
    ]
    codes = [
        room.http.post(
            f"/shows/{show_id}/queue", headers={**auth(api.new_customer()), **spelling}
        ).status_code
        for spelling in spellings
    ]
    assert codes == [201] * JOINS_PER_MINUTE
    for dodge in (
        [("X-Forwarded-For", "203.0.113.99"), ("X-Forwarded-For", real)],
        [("X-Forwarded-For", f"{real}:4242")],
        [("X-Forwarded-For", f"::ffff:{real}")],
        [("X-Forwarded-For", f"[::ffff:{real}]:80")],
        [("X-Forwarded-For", f"10.0.0.1, 127.0.0.1, {real}")],
    ):
        fan = api.new_customer()
        r = room.http.post(f"/shows/{show_id}/queue", headers=[*auth(fan).items(), *dodge])
        assert_problem(r, 429, "rate-limited")
    # The same /64 is one bucket.
    for n in range(JOINS_PER_MINUTE):
        r = joined(room, show_id, api.new_customer(), f"{v6}::{n + 1}")
        assert r.status_code == 201, r.text
    r = joined(room, show_id, api.new_customer(), f"{v6}::ffff")
    assert_problem(r, 429, "rate-limited")


def test_without_a_trusted_proxy_x_forwarded_for_proves_nothing():
    """The rule the limit counts by (pure): an untrusted peer's X-Forwarded-For is ignored;
    behind a trusted one, the rightmost untrusted hop is the client; garbage ends the walk."""
    proxies = (ip_network("10.0.0.0/8"),)
    assert resolve_client_address("192.0.2.1", ["203.0.113.5"], ()) == "192.0.2.1"
    assert resolve_client_address("192.0.2.1", ["203.0.113.5"], proxies) == "192.0.2.1"
    assert resolve_client_address("10.0.0.2", ["1.2.3.4, 192.0.2.9"], proxies) == "192.0.2.9"
    assert resolve_client_address("10.0.0.2", ["192.0.2.9, 10.1.1.1"], proxies) == "192.0.2.9"
    assert resolve_client_address("10.0.0.2", ["1.2.3.4, not-an-ip"], proxies) == "10.0.0.2"
    assert resolve_client_address("10.0.0.2", ["::ffff:192.0.2.9"], proxies) == "192.0.2.9"
    assert limit_key("2001:db8::1") == limit_key("2001:db8::ffff:1") == "2001:db8::/64"


# --- fairness ---------------------------------------------------------------------------------


def test_a_fan_hammering_join_before_the_opening_gains_nothing(
    api: Api, room: Api, clock: SetClock
):
    """1,000 joins of one account before the opening: one token, no position before the
    opening, and at the opening the place the draw gave that token."""
    show_id = queued_show(api)
    opens = opens_at(api, show_id)
    clock.at = opens - timedelta(minutes=30)
    others = [api.new_customer() for _ in range(20)]
    for n, fan in enumerate(others):
        assert joined(room, show_id, fan, f"192.0.2.{n + 1}").status_code == 201
    scalper = api.new_customer()
    answers = []
    for n in range(1000):
        at = f"203.0.113.{n // JOINS_PER_MINUTE % 250 + 1}"
        answers.append(joined(room, show_id, scalper, at))
    assert answers[0].status_code == 201, answers[0].text
    assert {r.status_code for r in answers[1:]} == {200}
    bodies = [r.json() for r in answers]
    token = bodies[0]["token"]
    assert {b["token"] for b in bodies} == {token}
    assert {b["position"] for b in bodies} == {None}
    before = status_of(room, show_id, scalper, token)
    assert before["position"] is None and before["estimated_wait_seconds"] is None
    assert not before["admitted"] and before["admission"] is None

    clock.at = opens
    place = status_of(room, show_id, scalper, token)["position"]
    assert 1 <= place <= 21
    # The draw: an HMAC of the token under the draw key, ranked among everyone early.
    assert joined(room, show_id, scalper, address()).json()["position"] == place


# --- admissions -------------------------------------------------------------------------------


def test_an_admission_is_refused_for_another_show_account_or_after_its_expiry(
    api: Api, room: Api, clock: SetClock
):
    show_a, show_b = queued_show(api), queued_show(api)
    ann, bob = api.new_customer(), api.new_customer()
    admission = admitted(room, show_a, ann, clock)
    claims = jwt.decode(admission, options={"verify_signature": False})
    expires = datetime.fromtimestamp(claims["exp"], UTC)
    assert_queue_required(book(room, ann, show_b, admission), "another show")
    assert_queue_required(book(room, bob, show_a, admission), "another account")
    # A client whose clock is behind replays it after its expiry: the server's clock counts.
    clock.at = expires + timedelta(seconds=1)
    assert_queue_required(book(room, ann, show_a, admission), "expired")
    clock.at = expires + timedelta(days=1)
    assert_queue_required(book(room, ann, show_a, admission), "expired")
    # Hand-made claims (a far expiry) under keys that are not the admissions'.
    clock.at = opens_at(room, show_a) + timedelta(minutes=5)
    forged_keys = (
        TEST_JWT_SECRET,  # the access tokens' key
        derived_key(TEST_JWT_SECRET, "waiting-room draw v1"),  # the draw's key
        derived_key(TEST_JWT_SECRET, "waiting-room admission v2"),
    )
    for key in forged_keys:
        forged = jwt.encode({**claims, "exp": claims["exp"] + 10**8}, key, algorithm="HS256")
        assert_queue_required(book(room, ann, show_a, forged), "not valid")
    unsigned = jwt.encode({**claims, "exp": claims["exp"] + 10**8}, "", algorithm="none")
    assert_queue_required(book(room, ann, show_a, unsigned), "not valid")
    # The admission's own signature under another header (alg swapped) is not valid either.
    _, payload, signature = admission.split(".")
    for header in ({"alg": "none"}, {"alg": "HS512"}, {"alg": "HS256", "kid": "../../x"}):
        swapped = jwt.utils.base64url_encode(json.dumps(header).encode()).decode()
        assert_queue_required(book(room, ann, show_a, f"{swapped}.{payload}.{signature}"), "valid")
    assert book(room, ann, show_a, admission).status_code == 201


def test_an_access_token_is_no_admission_and_an_admission_is_no_access_token(
    api: Api, room: Api, clock: SetClock
):
    show_id = queued_show(api)
    fan = api.new_customer()
    admission = admitted(room, show_id, fan, clock)
    access = fan["Authorization"].removeprefix("Bearer ")
    assert_queue_required(book(room, fan, show_id, access), "not valid")
    for path in ("/me", f"/shows/{show_id}/queue"):
        r = room.http.request(
            "GET" if path == "/me" else "POST",
            path,
            headers={"Authorization": f"Bearer {admission}"},
        )
        assert r.status_code == 401, (path, r.text)
    r = room.http.post(
        "/bookings",
        json={"show_id": show_id, "quantity": 1, "admission": admission},
        headers={"Authorization": f"Bearer {admission}"},
    )
    assert r.status_code == 401, r.text


def test_while_the_room_is_off_an_admission_is_ignored_not_an_error(
    api: Api, room: Api, clock: SetClock
):
    """A client that always sends its admission keeps working when there is no waiting room
    (or before it is on): well-formed admissions, even stale or foreign ones, are ignored;
    malformed ones are still a 422."""
    plain = queued_show(api, rate=None)
    queued = queued_show(api)
    fan = api.new_customer()
    foreign = admitted(room, queued, fan, clock)
    for admission in (foreign, "abc.def.ghi"):
        r = book(room, fan, plain, admission)
        assert r.status_code == 201, r.text
    clock.at = opens_at(api, queued) - timedelta(minutes=1)  # not on yet
    assert book(room, fan, queued, "abc.def.ghi").status_code == 201
    r = book(room, fan, plain, "not an admission")
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM_JSON), r.text


def test_the_room_turned_off_then_on_again(api: Api, room: Api, clock: SetClock):
    """Off and on again before the opening: the fan keeps their token (and so their draw);
    while off, the room answers 409 `no-queue`. Once the sale opened the room can be turned
    off but never on again, so an admission cannot outlive a room turned back on."""
    show_id = queued_show(api)
    admin = api.admin()
    fan = api.new_customer()
    opens = opens_at(api, show_id)
    clock.at = opens - timedelta(hours=1)
    token = joined(room, show_id, fan, address()).json()["token"]

    def rate_is(rate: int | None) -> bool:
        return api.http.get(f"/shows/{show_id}").json()["queue_admits_per_minute"] == rate

    def room_says(code: int) -> bool:
        return joined(room, show_id, fan, address()).status_code == code

    r = api.http.patch(f"/shows/{show_id}", json={"queue_admits_per_minute": None}, headers=admin)
    assert r.status_code == 200, r.text
    wait_until(lambda: rate_is(None), 30, "the room off in the catalog")
    wait_until(lambda: room_says(409), 30, "the room to answer no-queue")
    assert_problem(joined(room, show_id, fan, address()), 409, "no-queue")
    r = room.http.get(f"/shows/{show_id}/queue/{token}", headers=auth(fan))
    assert_problem(r, 409, "no-queue")
    # While off, bookings need nothing (the sale was opened by hand).
    clock.at = opens + timedelta(minutes=1)
    assert book(room, fan, show_id).status_code == 201
    clock.at = opens - timedelta(hours=1)

    r = api.http.patch(f"/shows/{show_id}", json={"queue_admits_per_minute": 60}, headers=admin)
    assert r.status_code == 200, r.text
    wait_until(lambda: rate_is(60), 30, "the room on again in the catalog")
    wait_until(lambda: room_says(200), 30, "the room to take joins again")
    assert joined(room, show_id, fan, address()).json()["token"] == token

    # After the (real) opening: off is allowed, on again is refused.
    soon = queued_show(api, opens_in=timedelta(seconds=3))
    wait_until(
        lambda: datetime.now(UTC) > opens_at(api, soon) + timedelta(seconds=1),
        30,
        "the sale to open",
    )
    r = api.http.patch(f"/shows/{soon}", json={"queue_admits_per_minute": None}, headers=admin)
    assert r.status_code == 200, r.text
    r = api.http.patch(f"/shows/{soon}", json={"queue_admits_per_minute": 60}, headers=admin)
    assert_problem(r, 422, "invalid-show")


def test_an_admission_does_not_survive_a_postponed_opening(api: Api, room: Api, clock: SetClock):
    """The organiser postpones the opening after fans were let in: the order is drawn again
    at the new opening, so an admission of the first opening must not book at the second
    ahead of the queue."""
    show_id = queued_show(api, opens_in=timedelta(days=1))
    fan = api.new_customer()
    admission = admitted(room, show_id, fan, clock)  # clock: first opening + 5 min
    token = joined(room, show_id, fan, address()).json()["token"]
    first = opens_at(api, show_id)
    later = first + timedelta(minutes=7)
    r = api.http.patch(
        f"/shows/{show_id}", json={"sale_opens_at": later.isoformat()}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    wait_until(lambda: opens_at(api, show_id) == later, 30, "the new opening in the catalog")
    clock.at = later + timedelta(seconds=1)  # the admission is still unexpired

    def knows_the_new_opening() -> bool:
        state = status_of(room, show_id, fan, token)
        return datetime.fromisoformat(state["opens_at"]) == later

    wait_until(knows_the_new_opening, 30, "the room to know the new opening")
    assert_queue_required(book(room, fan, show_id, admission), "earlier opening")


# --- queue tokens -----------------------------------------------------------------------------


def test_a_token_works_only_for_its_own_show_account_and_exact_spelling(
    api: Api, room: Api, clock: SetClock
):
    show_a, show_b = queued_show(api), queued_show(api)
    ann, bob = api.new_customer(), api.new_customer()
    token = joined(room, show_a, ann, address()).json()["token"]
    assert joined(room, show_b, ann, address()).json()["token"] != token
    assert status_of(room, show_a, ann, token)["token"] == token
    r = room.http.get(f"/shows/{show_b}/queue/{token}", headers=auth(ann))
    assert_problem(r, 404, "not-found")
    r = room.http.get(f"/shows/{show_a}/queue/{token}", headers=auth(bob))
    assert_problem(r, 404, "not-found")
    swapped = token.swapcase() if token.swapcase() != token else token[::-1]
    variants = [
        swapped,
        token + "%20",
        "%20" + token,
        token + "%0d%0aSet-Cookie:%20x=1",
        token[:-1],
        token + "A" * 10_000,
        token[:-1] + "\uff21",  # a full-width letter
        f"..%2F{token}",
        f"{token}%00",
    ]
    for variant in variants:
        r = room.http.get(f"/shows/{show_a}/queue/{variant}", headers=auth(ann))
        assert r.status_code in (404, 414, 431), (variant[:40], r.text[:200])
        assert "set-cookie" not in {k.lower() for k in r.headers}
        if r.status_code == 404:
            assert r.headers["content-type"].startswith(PROBLEM_JSON)
    r = room.http.get(f"/shows/{uuid.uuid4()}/queue/{token}", headers=auth(ann))
    assert_problem(r, 404, "not-found")
    r = room.http.get(f"/shows/not-a-uuid/queue/{token}", headers=auth(ann))
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM_JSON)


def test_no_joining_after_the_sale_closed_a_cancellation_or_a_deletion(
    api: Api, room: Api, clock: SetClock
):
    admin = api.admin()
    closed, cancelled, deleted = queued_show(api), queued_show(api), queued_show(api)
    fan = api.new_customer()
    token = joined(room, closed, fan, address()).json()["token"]
    starts = datetime.fromisoformat(api.http.get(f"/shows/{closed}").json()["starts_at"])
    clock.at = starts  # the sale closes at the start
    assert_problem(joined(room, closed, api.new_customer(), address()), 409, "no-queue")
    assert_problem(joined(room, closed, fan, address()), 409, "no-queue")
    state = status_of(room, closed, fan, token)
    assert state["admission"] is None  # let in long ago, but the sale is over
    clock.at = None

    fan_token = joined(room, cancelled, fan, address()).json()["token"]
    r = api.http.post(f"/shows/{cancelled}/cancel", json={"reason": "storm"}, headers=admin)
    assert r.status_code == 200, r.text
    wait_until(
        lambda: joined(room, cancelled, api.new_customer(), address()).status_code == 409,
        30,
        "joins of a cancelled show refused",
    )
    assert_problem(joined(room, cancelled, fan, address()), 409, "no-queue")
    clock.at = opens_at(api, cancelled) + timedelta(hours=1)
    assert status_of(room, cancelled, fan, fan_token)["admission"] is None
    clock.at = None

    r = api.http.delete(f"/shows/{deleted}", headers=admin)
    assert r.status_code == 204, r.text
    wait_until(
        lambda: joined(room, deleted, api.new_customer(), address()).status_code == 404,
        30,
        "joins of a deleted show not found",
    )
    assert_problem(joined(room, deleted, fan, address()), 404, "not-found")


# --- the web pages ----------------------------------------------------------------------------


def test_the_web_hold_form_needs_the_waiting_room_too(api: Api, room: Api, clock: SetClock):
    """A fan who skips the queue by posting the show page's hold form (cookie session, CSRF
    token) while the room is on is refused, and nothing is held."""
    show_id = queued_show(api)
    fan = api.new_customer()
    clock.at = opens_at(api, show_id) + timedelta(minutes=1)
    base = room.base_url.removesuffix("/api/v1")
    with httpx.Client(base_url=base, timeout=30) as browser:
        page = browser.get("/login")
        token = CSRF.search(page.text)
        assert token, page.text
        r = browser.post(
            "/login", data={"email": fan["email"], "password": PASSWORD, "csrf_token": token[1]}
        )
        assert r.status_code == 303, r.text
        page = browser.get(f"/shows/{show_id}")
        token = CSRF.search(page.text) or token
        r = browser.post(
            f"/shows/{show_id}/hold",
            data={"section": "GA", "quantity": "1", "csrf_token": token[1]},
        )
        assert r.status_code == 403, (r.status_code, r.headers.get("location"))
    details = api.http.get(f"/shows/{show_id}", params={"after": head(api)}).json()
    assert details["available"] == details["capacity"]


# --- hot reads --------------------------------------------------------------------------------


def answer_of(r: httpx.Response) -> tuple[Any, ...]:
    """What must be the same whichever path answered: status, type, validators, body."""
    body = r.json() if r.content else None
    return (
        r.status_code,
        r.headers.get("content-type"),
        r.headers.get("etag"),
        r.headers.get("cache-control"),
        body,
    )


def test_the_fast_path_answers_every_spelling_exactly_like_the_route(api: Api):
    """The lower-case path is answered from memory; an upper-case id always goes through
    FastAPI's routing: whatever the query, both answer the same."""
    show = api.new_show(rows=1, seats_per_row=3)
    top = head(api)
    for suffix in ("", "/seats"):
        path, upper = f"/shows/{show}{suffix}", f"/shows/{show.upper()}{suffix}"
        warm = api.http.get(path, params={"after": top})
        assert warm.status_code == 200
        assert answer_of(api.http.get(path)) == answer_of(api.http.get(upper))
        for query in (
            "after=1",
            "after=0",
            "after=000000000000000001",
            "after=1&after=999999999999",
            "after=999999999999&after=1",
            "after=-1",
            "after=abc",
            "after=",
            "after=1.5",
            "after=99999999999999999999999",
            "after=%31",
            "AFTER=1",
            "after=1&x=y",
        ):
            fast, routed = api.http.get(f"{path}?{query}"), api.http.get(f"{upper}?{query}")
            assert answer_of(fast) == answer_of(routed), query
            assert fast.status_code in (200, 422), (query, fast.text)
            if fast.status_code == 422:
                assert fast.headers["content-type"].startswith(PROBLEM_JSON), query
        # An encoded slash is the same path; a trailing slash is not another answer.
        encoded = api.http.get(f"{api.base_url}/shows/{show}%2Fseats")
        if suffix == "/seats":
            assert answer_of(encoded) == answer_of(api.http.get(path))
        slash = api.http.get(path + "/")
        assert slash.status_code in (307, 404), slash.status_code
        if slash.status_code == 307:
            assert slash.headers["location"].endswith(path)


def test_head_of_a_hot_read_is_never_a_stale_or_bodied_answer(api: Api):
    show = api.new_show(rows=1, seats_per_row=3)
    for path in (f"/shows/{show}", f"/shows/{show}/seats"):
        got = api.http.get(path, params={"after": head(api)})
        r = api.http.head(path)
        assert r.content == b"", r.content
        assert r.status_code == 200 and r.headers["etag"] == got.headers["etag"]
        assert int(r.headers["content-length"]) == len(got.content)
        # HEAD with the current tag: a 304, like the GET.
        r = api.http.head(path, headers={"If-None-Match": got.headers["etag"]})
        assert r.status_code == 304 and r.content == b""


def test_a_show_that_never_existed_is_never_answered_from_memory(api: Api):
    ghost = str(uuid.uuid4())
    for path in (f"/shows/{ghost}", f"/shows/{ghost}/seats"):
        for sent in (None, "*", '"AAAAAAAAAAAAAAAA"'):
            headers = {"If-None-Match": sent} if sent else {}
            for _ in range(2):
                r = api.http.get(path, headers=headers)
                assert_problem(r, 404, "not-found")
                assert "etag" not in r.headers


def test_one_shows_tag_never_revalidates_another_shows_answer(api: Api):
    a, b = api.new_show(rows=1, seats_per_row=3), api.new_show(rows=1, seats_per_row=3)
    top = {"after": head(api)}
    for suffix in ("", "/seats"):
        tag_a = api.http.get(f"/shows/{a}{suffix}", params=top).headers["etag"]
        first_b = api.http.get(f"/shows/{b}{suffix}", params=top)
        for _ in range(2):  # from memory the second time
            r = api.http.get(f"/shows/{b}{suffix}", headers={"If-None-Match": tag_a})
            assert r.status_code == 200 and r.headers["etag"] == first_b.headers["etag"]
            assert r.json()["show_id"] == b and r.headers["etag"] != tag_a


def test_huge_if_none_match_headers_are_answered_correctly(api: Api):
    show = api.new_show(rows=1, seats_per_row=3)
    path = f"/shows/{show}/seats"
    etag = api.http.get(path, params={"after": head(api)}).headers["etag"]
    many = ", ".join(f'"{n:016d}"' for n in range(10_000))  # about 200 KB
    padded = '"' + "x" * 64 * 1024 + '"'
    for sent, expected in (
        (many, 200),
        (many + ", " + etag, 304),
        (padded, 200),
        (padded + ", " + etag, 304),
        ("W/" * 20_000 + etag, 304),
        ('"' * 30_000, 200),
    ):
        r = api.http.get(path, headers={"If-None-Match": sent})
        assert r.status_code in (expected, 400, 431), (sent[:30], r.status_code)
        if r.status_code == 200:
            assert r.headers["etag"] == etag and r.json()["show_id"] == show
