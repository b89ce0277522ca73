"""The live seat map (`GET /shows/{id}/seats/events`, web/live.py): a client that asks from a
position the feed has not reached yet (its page was read later than the feed's last look, or
from another process) gets no changes relative to an older state: it waits, then gets one
snapshot labelled past its position; one from an older position gets a snapshot at once; and
the diffs that follow carry strictly increasing positions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration


def events(lines: Iterator[str], count: int, deadline: float) -> list[dict[str, Any]]:
    """The next `count` events of a stream's lines (kind, id, data), before `deadline`."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if line.startswith("event: "):
            current["kind"] = line[7:]
        elif line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and "kind" in current:
            found.append(current)
            current = {}
            if len(found) == count:
                return found
        assert time.monotonic() < deadline, f"only {found} before the deadline"
    return found


def hold(api: Api, show_id: str, seat: str) -> None:
    fan = api.new_customer()
    r = api.http.post(
        "/bookings",
        json={"show_id": show_id, "seats": [seat]},
        headers={"Authorization": fan["Authorization"]},
    )
    assert r.status_code == 201, r.text


def test_a_client_ahead_of_the_feed_waits_for_it_and_then_gets_a_snapshot(api: Api):
    show_id = api.new_show(rows=2, seats_per_row=5)
    seats = api.http.get(f"/shows/{show_id}/seats")
    assert seats.status_code == 200, seats.text
    ahead = int(seats.json()["position"]) + 1  # not reached by the seat map yet
    url = f"{api.server_url}/shows/{show_id}/seats/events"
    with httpx.Client(timeout=30) as http, http.stream("GET", url, params={"since": ahead}) as s:
        assert s.status_code == 200
        lines = s.iter_lines()
        hold(api, show_id, "A-1-1")
        deadline = time.monotonic() + 30
        [first] = events(lines, 1, deadline)
        state = dict(first["data"]["seats"])
        positions = [first["id"]]
        while state["A-1-1"] != "held":  # the feed may pass `ahead` before the hold
            [change] = events(lines, 1, deadline)
            assert change["kind"] == "seats"
            positions.append(change["id"])
            state.update(change["data"]["seats"])
    assert first["kind"] == "snapshot"  # never a diff from a state older than the client's
    assert first["id"] > ahead - 1 and first["id"] == first["data"]["position"]
    assert positions == sorted(set(positions))


def test_a_client_behind_gets_a_snapshot_then_changes_in_increasing_positions(api: Api):
    show_id = api.new_show(rows=2, seats_per_row=5)
    url = f"{api.server_url}/shows/{show_id}/seats/events"
    with httpx.Client(timeout=30) as http, http.stream("GET", url, params={"since": 0}) as s:
        assert s.status_code == 200
        lines = s.iter_lines()
        [snapshot] = events(lines, 1, time.monotonic() + 30)
        hold(api, show_id, "A-1-2")
        hold(api, show_id, "A-2-3")
        deadline = time.monotonic() + 30
        changes: dict[str, str] = {}
        positions = [snapshot["id"]]
        while set(changes) != {"A-1-2", "A-2-3"}:
            [change] = events(lines, 1, deadline)
            assert change["kind"] == "seats"
            positions.append(change["id"])
            changes.update(change["data"]["seats"])
    assert snapshot["kind"] == "snapshot"
    assert set(snapshot["data"]["seats"].values()) == {"free"}
    assert changes == {"A-1-2": "held", "A-2-3": "held"}
    assert positions == sorted(set(positions))
