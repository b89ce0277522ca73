"""Audits against the running system: what the API showed at a time is what a replay of the
log as of that time rebuilds; admins read any stream's events over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from http_shell.container import Container
from tests.e2e.conftest import Api
from tests.integration.audit_support import run_cli

pytestmark = pytest.mark.integration

# What the query API shows of a booking that its replayed state holds too.
SHARED = (
    "show_id",
    "customer_id",
    "status",
    "seats",
    "general",
    "amount_cents",
    "currency",
    "payment_method",
    "paid_cents",
    "refunded_cents",
    "reason",
)


def test_replay_as_of_a_time_rebuilds_what_the_api_showed_then(api: Api, container: Container):
    """Given a booking the API showed as held at time T, and cancelled afterwards;
    when its stream is replayed as of T;
    then the state is the one the API showed at T (and now the cancelled one)."""
    show_id = api.new_show()
    customer = api.new_customer()
    placed = api.http.post(
        "/bookings", json={"show_id": show_id, "seats": ["A-1-1", "A-1-2"]}, headers=customer
    )
    assert placed.status_code == 201, placed.text
    booking_id = placed.json()["booking_id"]
    then = api.http.get(
        f"/bookings/{booking_id}", params={"after": placed.json()["position"]}, headers=customer
    )
    assert then.status_code == 200, then.text
    at = datetime.now(UTC)
    cancelled = api.http.post(f"/bookings/{booking_id}/cancel", headers=customer)
    assert cancelled.status_code == 202, cancelled.text
    now = api.http.get(
        f"/bookings/{booking_id}", params={"after": cancelled.json()["position"]}, headers=customer
    )
    database_url = container.settings.database_url
    assert database_url is not None

    replayed_then = replay_json(database_url, booking_id, "--as-of", at.isoformat())
    replayed_now = replay_json(database_url, booking_id)

    assert then.json()["status"] == "held" and now.json()["status"] == "cancelled"
    for api_state, replayed in ((then.json(), replayed_then), (now.json(), replayed_now)):
        assert {k: replayed["state"][k] for k in SHARED} == {k: api_state[k] for k in SHARED}
        assert datetime.fromisoformat(replayed["state"]["hold_expires_at"]) == (
            datetime.fromisoformat(api_state["hold_expires_at"])
        )
    assert replayed_then["later_events"] == 1


def replay_json(database_url: str, booking_id: str, *args: str) -> dict:
    result = run_cli(database_url, "replay", booking_id, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_admins_read_a_streams_events_page_by_page(api: Api):
    show_id = api.new_show()
    customer = api.new_customer()
    placed = api.http.post(
        "/bookings", json={"show_id": show_id, "seats": ["A-2-1"]}, headers=customer
    )
    booking_id = placed.json()["booking_id"]
    cancelled = api.http.post(f"/bookings/{booking_id}/cancel", headers=customer)
    admin = api.admin()

    first = api.http.get(f"/admin/streams/{booking_id}/events", params={"limit": 1}, headers=admin)
    rest = api.http.get(
        f"/admin/streams/{booking_id}/events",
        params={"after_version": first.json()["next_after_version"]},
        headers=admin,
    )
    as_customer = api.http.get(f"/admin/streams/{booking_id}/events", headers=customer)
    unknown = api.http.get(f"/admin/streams/{uuid4()}/events", headers=admin)

    assert first.status_code == 200, first.text
    assert [(e["version"], e["type"]) for e in first.json()["events"]] == [(1, "Booking.Placed")]
    assert first.json()["events"][0]["position"] == placed.json()["position"]
    assert first.json()["events"][0]["payload"]["seats"] == ["A-2-1"]
    assert first.json()["next_after_version"] == 1
    assert [(e["version"], e["type"]) for e in rest.json()["events"]] == [(2, "Booking.Cancelled")]
    # the command's position is its last event's: the booking's Cancelled, or the seats'
    # release decided after it in the same transaction
    assert rest.json()["events"][0]["position"] in (
        cancelled.json()["position"],
        cancelled.json()["position"] - 1,
    )
    assert rest.json()["next_after_version"] is None
    assert as_customer.status_code == 403
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


def test_password_hashes_never_leave_the_log_in_replays_or_stream_pages(
    api: Api, container: Container
):
    """Given an account that registered and changed its password;
    when an admin reads its stream over HTTP and an operator replays it;
    then the hashes show as redacted, nowhere in full."""
    customer = api.new_customer()
    changed = api.http.post(
        "/me/password",
        json={"current": "correct horse battery", "new": "battery staple horse"},
        headers=customer,
    )
    assert changed.status_code == 200, changed.text
    account_id = customer["account_id"]
    page = api.http.get(f"/admin/streams/{account_id}/events", headers=api.admin())
    assert page.status_code == 200, page.text
    database_url = container.settings.database_url
    assert database_url is not None
    replayed = run_cli(database_url, "replay", account_id, "--json")

    events = page.json()["events"]
    hashes = [e["payload"]["password_hash"] for e in events if "password_hash" in e["payload"]]
    assert len(hashes) == 2 and set(hashes) == {"[redacted]"}  # registered, changed
    assert json.loads(replayed.stdout)["state"]["password_hash"] == "[redacted]"
    for text in (page.text, replayed.stdout):
        assert "$argon2" not in text
