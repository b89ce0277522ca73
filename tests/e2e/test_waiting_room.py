"""The fair waiting room against the real servers (PostgreSQL, Valkey), over HTTP.

"The room" is the app on the session's database and Redis deciding with a clock the test sets
(`bootstrap(clock=)`): the times before, at and after a show's opening are the test's to pick,
so the checks are counts and orders, never durations. Shows are scheduled (and their sale opened
by hand, so holds go through) with the session's app; the catalog it projects is what the room
reads the show's rate and window from."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain.waiting_room import rank_correlation
from http_shell.problems import PROBLEM_JSON, TYPE_BASE
from tests.e2e.conftest import Api
from tests.e2e.queue_support import (
    RATE,
    SetClock,
    assert_queue_required,
    auth,
    book,
    clock_fixtures,
    join,
    opens_at,
    queued_show,
    room_fixture,
    status_of,
)
from tests.e2e.saga_support import wait_until

pytestmark = pytest.mark.integration

FANS = 200

clock, real_time_after = clock_fixtures()
room = room_fixture("waiting-room", rate_limit_queue_join_per_minute=100_000)


def test_the_show_page_has_the_rate_and_organisers_change_it_before_the_opening(api: Api):
    show_id = queued_show(api, rate=300)
    admin = api.admin()

    r = api.http.patch(f"/shows/{show_id}", json={"queue_admits_per_minute": 900}, headers=admin)
    assert r.status_code == 200, r.text
    wait_until(
        lambda: api.http.get(f"/shows/{show_id}").json()["queue_admits_per_minute"] == 900,
        30,
        "the new rate in the catalog",
    )
    for bad in (0, 100_001, "300", 2.5):
        r = api.http.patch(
            f"/shows/{show_id}", json={"queue_admits_per_minute": bad}, headers=admin
        )
        assert r.status_code == 422, r.text
    # No automatic opening, no waiting room: refused as a whole.
    r = api.http.patch(f"/shows/{show_id}", json={"sale_opens_at": None}, headers=admin)
    assert r.status_code == 422 and r.json()["type"] == TYPE_BASE + "invalid-show", r.text
    r = api.http.patch(f"/shows/{show_id}", json={"queue_admits_per_minute": None}, headers=admin)
    assert r.status_code == 200, r.text
    wait_until(
        lambda: api.http.get(f"/shows/{show_id}").json()["queue_admits_per_minute"] is None,
        30,
        "the waiting room gone from the catalog",
    )


def test_early_fans_are_drawn_fairly_and_let_in_at_the_rate(api: Api, room: Api, clock: SetClock):
    """200 fans join before the opening in a known order; at the opening their order is a
    permutation unrelated to their arrival; joining again changes nothing; floor(rate x t) of
    them are let in after t; a fan arriving after the opening queues behind them all."""
    show_id = queued_show(api)
    opens = opens_at(api, show_id)
    clock.at = opens - timedelta(hours=1)
    fans = [api.new_customer() for _ in range(FANS)]

    tokens: list[str] = []
    for fan in fans:  # arrival order: the list's
        r = join(room, show_id, fan)
        assert r.status_code == 201, r.text
        assert r.json()["position"] is None  # drawn at the opening
        assert datetime.fromisoformat(r.json()["opens_at"]) == opens
        tokens.append(r.json()["token"])
    assert len(set(tokens)) == FANS
    for fan, token in list(zip(fans, tokens, strict=True))[:20]:  # hammering early: same token
        again = join(room, show_id, fan)
        assert again.status_code == 200 and again.json()["token"] == token, again.text
    assert status_of(room, show_id, fans[0], tokens[0])["position"] is None

    # At the opening: nobody in yet, every position is the fan's place in the draw.
    clock.at = opens
    positions = [
        status_of(room, show_id, f, t)["position"] for f, t in zip(fans, tokens, strict=True)
    ]
    assert sorted(positions) == list(range(1, FANS + 1))
    drawn = [token for _, token in sorted(zip(positions, tokens, strict=True))]
    rho = rank_correlation(tokens, drawn)
    assert abs(rho) < 0.3, f"admission order follows arrival order (rho {rho:.3f})"
    for fan, token, position in list(zip(fans, tokens, positions, strict=True))[:10]:
        again = join(room, show_id, fan)  # joining again after the opening: the same place
        assert again.status_code == 200
        assert (again.json()["token"], again.json()["position"]) == (token, position)

    # The pace: after t, exactly floor(rate x t) are in, the first of the draw first.
    for seconds in (30, 90, 150):
        clock.at = opens + timedelta(seconds=seconds)
        states = [status_of(room, show_id, f, t) for f, t in zip(fans, tokens, strict=True)]
        admitted = [i for i, s in enumerate(states) if s["admitted"]]
        assert len(admitted) == RATE * seconds // 60
        assert {positions[i] for i in admitted} == set(range(1, len(admitted) + 1))
        for state, position in zip(states, positions, strict=True):
            if state["admitted"]:
                assert state["position"] == 0 and state["admission"]
            else:
                assert state["position"] == position - len(admitted)
                assert state["estimated_wait_seconds"] == position - seconds  # one a second
                assert state["admission"] is None

    # A fan who arrives after the opening queues behind everyone who came before it.
    late = api.new_customer()
    r = join(room, show_id, late)
    assert r.status_code == 201, r.text
    assert r.json()["position"] == FANS + 1 - 150
    clock.at = None


def test_bookings_need_the_callers_own_admission_while_the_room_is_on(
    api: Api, room: Api, clock: SetClock
):
    show_id = queued_show(api)
    other_show = queued_show(api)
    opens = opens_at(api, show_id)
    ann, bob = api.new_customer(), api.new_customer()
    clock.at = opens - timedelta(minutes=5)
    tokens = {}
    for fan in (ann, bob):
        tokens[fan["account_id"]] = join(room, show_id, fan).json()["token"]
        assert join(room, other_show, fan).status_code == 201
    # Before the opening the room is not on yet (the sale was opened by hand): no admission.
    assert book(room, ann, show_id).status_code == 201

    clock.at = opens + timedelta(minutes=5)  # 300 let in: both
    state = status_of(room, show_id, ann, tokens[ann["account_id"]])
    assert state["admitted"] and state["position"] == 0
    admission = state["admission"]
    expires = datetime.fromisoformat(state["admission_expires_at"])
    assert expires == (clock.at + timedelta(minutes=10)).replace(microsecond=0)
    other = status_of(room, other_show, ann, join(room, other_show, ann).json()["token"])

    assert_queue_required(book(room, ann, show_id), "join it")
    assert_queue_required(book(room, bob, show_id, admission), "another account")
    assert_queue_required(book(room, ann, show_id, other["admission"]), "another show")
    head, payload, signature = admission.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert_queue_required(book(room, ann, show_id, f"{head}.{payload}.{flipped}"), "not valid")
    assert_queue_required(book(room, ann, show_id, api.admin()["Authorization"][7:]), "not valid")
    clock.at = expires
    assert_queue_required(book(room, ann, show_id, admission), "expired")
    clock.at = opens + timedelta(minutes=5)

    r = book(room, ann, show_id, admission)
    assert r.status_code == 201, r.text
    # Someone else's token shows them nothing.
    r = room.http.get(f"/shows/{show_id}/queue/{tokens[ann['account_id']]}", headers=auth(bob))
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM_JSON)
    clock.at = None


def test_a_show_without_a_waiting_room_has_no_queue(api: Api, room: Api):
    show_id = queued_show(api, rate=None)
    fan = api.new_customer()
    r = join(room, show_id, fan)
    assert r.status_code == 409 and r.json()["type"] == TYPE_BASE + "no-queue", r.text
    r = room.http.post("/shows/6f1c2a4e-7b6d-4c1e-9a57-1f0b8a2d4c11/queue", headers=auth(fan))
    assert r.status_code == 404, r.text
