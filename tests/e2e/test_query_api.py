"""The query API as customers, organisers and operators use it, over HTTP against real servers,
with the projection runners following the log as under `ticketblitz up`."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + kind)
    return body


def schedule(api: Api, title: str, category: str, starts_at: str, description: str = "") -> str:
    body = {
        "title": title,
        "description": description,
        "category": category,
        "venue": "Club",
        "starts_at": starts_at,
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 2000}],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 4}]}
        ],
    }
    r = api.http.post("/shows", json=body, headers=api.admin())
    assert r.status_code == 201, r.text
    show_id: str = r.json()["show_id"]
    return show_id


def book(api: Api, customer: dict[str, str], show: str, **request: Any) -> dict[str, Any]:
    r = api.http.post("/bookings", json={"show_id": show, **request}, headers=customer)
    assert r.status_code == 201, r.text
    placed: dict[str, Any] = r.json()
    return placed


def head(api: Api) -> int:
    position: int = api.http.get("/projections").json()["head"]
    return position


# --- read-your-writes ---


def test_a_booking_is_visible_as_soon_as_the_command_returns(api: Api):
    show = api.new_show()
    customer = api.new_customer()

    placed = book(api, customer, show, seats=["A-1-1", "A-1-2"])
    r = api.http.get(
        f"/bookings/{placed['booking_id']}", params={"after": placed["position"]}, headers=customer
    )

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "held"
    assert r.json()["seats"] == ["A-1-1", "A-1-2"]
    assert r.json()["amount_cents"] == placed["amount_cents"]
    assert r.json()["position"] >= placed["position"]

    cancelled = api.http.post(f"/bookings/{placed['booking_id']}/cancel", headers=customer)
    r = api.http.get(
        f"/bookings/{placed['booking_id']}",
        params={"after": cancelled.json()["position"]},
        headers=customer,
    )
    assert r.json()["status"] == "cancelled"


def test_a_position_beyond_the_log_is_refused(api: Api):
    r = api.http.get("/shows", params={"after": head(api) + 1000})
    body = assert_problem(r, 422, "unknown-position")
    assert body["head"] >= 0


# --- bookings ---


def test_my_bookings_come_newest_first_in_pages(api: Api):
    show = api.new_show()
    customer = api.new_customer()
    placed = [book(api, customer, show, quantity=1) for _ in range(3)]

    first = api.http.get(
        "/me/bookings", params={"limit": 2, "after": placed[-1]["position"]}, headers=customer
    ).json()
    second = api.http.get(
        "/me/bookings", params={"limit": 2, "cursor": first["next_cursor"]}, headers=customer
    ).json()

    ids = [b["booking_id"] for b in first["items"] + second["items"]]
    assert ids == [p["booking_id"] for p in reversed(placed)]
    assert second["next_cursor"] is None
    stranger = api.new_customer()
    assert api.http.get("/me/bookings", headers=stranger).json()["items"] == []


def test_a_booking_is_shown_only_to_its_customer_or_an_admin(api: Api):
    show = api.new_show()
    customer = api.new_customer()
    placed = book(api, customer, show, quantity=1)
    path, after = f"/bookings/{placed['booking_id']}", {"after": placed["position"]}

    assert_problem(api.http.get(path, params=after, headers=api.new_customer()), 403, "forbidden")
    assert_problem(api.http.get(path, params=after), 401, "unauthorized")
    assert api.http.get(path, params=after, headers=api.admin()).status_code == 200
    unknown = api.http.get(f"/bookings/{uuid4()}", headers=customer)
    assert_problem(unknown, 404, "not-found")


# --- the catalog ---


def test_shows_are_searched_filtered_and_sorted_by_start_time(api: Api):
    word = f"zq{uuid4().hex[:8]}"
    late = schedule(api, f"{word} quartet", "jazz", "2031-05-03T20:00:00+00:00")
    early = schedule(api, "Evening trio", "jazz", "2031-05-01T20:00:00+00:00", f"with {word}")
    middle = schedule(api, f"{word} nights", "rock", "2031-05-02T20:00:00+00:00")
    schedule(api, "Unrelated", "jazz", "2031-05-02T21:00:00+00:00")
    after = {"after": head(api)}

    found = api.http.get("/shows", params={"q": word, **after}).json()
    assert [s["show_id"] for s in found["items"]] == [early, middle, late]
    assert found["items"][0]["price_from_cents"] == 2000

    jazz = api.http.get("/shows", params={"q": word, "category": "JAZZ"}).json()
    assert [s["show_id"] for s in jazz["items"]] == [early, late]

    window = {"q": word, "from": "2031-05-02T00:00:00Z", "to": "2031-05-03T00:00:00Z"}
    assert [s["show_id"] for s in api.http.get("/shows", params=window).json()["items"]] == [middle]

    pages, cursor = [], None
    for _ in range(10):  # two pages expected: a runaway cursor fails instead of looping
        params: dict[str, Any] = {"q": word, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.http.get("/shows", params=params).json()
        pages.append([s["show_id"] for s in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [[early, middle], [late]]


def test_a_show_counts_what_each_section_has_left(api: Api):
    show = api.new_show(rows=2, seats_per_row=10, general=100)
    customer = api.new_customer()
    book(api, customer, show, seats=["A-1-1", "A-1-2"])
    placed = book(api, customer, show, section="GA", quantity=3)

    details = api.http.get(f"/shows/{show}", params={"after": placed["position"]}).json()

    sections = {s["code"]: s for s in details["sections"]}
    assert sections["A"] | {"capacity": 20, "held": 2, "sold": 0, "available": 18} == sections["A"]
    assert sections["GA"]["held"] == 3 and sections["GA"]["available"] == 97
    assert (details["capacity"], details["available"]) == (120, 115)
    assert details["status"] == "on_sale"
    assert details["title"].startswith("Night of Jazz")


def test_the_seat_map_shows_every_seat_with_its_status(api: Api):
    show = api.new_show(rows=2, seats_per_row=3, general=10)
    placed = book(api, api.new_customer(), show, seats=["A-2-2"])

    seat_map = api.http.get(f"/shows/{show}/seats", params={"after": placed["position"]}).json()

    seated, general = seat_map["sections"]
    assert [row["label"] for row in seated["rows"]] == ["1", "2"]
    statuses = {s["seat"]: s["status"] for row in seated["rows"] for s in row["seats"]}
    assert statuses == {
        "A-1-1": "free",
        "A-1-2": "free",
        "A-1-3": "free",
        "A-2-1": "free",
        "A-2-2": "held",
        "A-2-3": "free",
    }
    assert general["code"] == "GA" and general["rows"] == [] and general["available"] == 10


def test_a_cached_read_is_never_older_than_the_position_asked_for(api: Api):
    show = api.new_show(rows=1, seats_per_row=5)
    path = f"/shows/{show}/seats"
    api.http.get(path, params={"after": head(api)})
    cached = api.http.get(path)
    assert cached.headers["x-cache"] == "hit"

    placed = book(api, api.new_customer(), show, seats=["A-1-3"])
    fresh = api.http.get(path, params={"after": placed["position"]})

    assert fresh.headers["x-cache"] == "miss"
    seats = {s["seat"]: s["status"] for s in fresh.json()["sections"][0]["rows"][0]["seats"]}
    assert seats["A-1-3"] == "held"
    again = api.http.get(path)  # the newer answer replaced the older one in the cache
    assert again.headers["x-cache"] == "hit"
    assert again.json()["position"] >= placed["position"]


def test_unknown_shows_are_not_found(api: Api):
    for path in (f"/shows/{uuid4()}", f"/shows/{uuid4()}/seats"):
        assert_problem(api.http.get(path), 404, "not-found")
    assert_problem(api.http.get(f"/shows/{uuid4()}/stats", headers=api.admin()), 404, "not-found")


# --- organisers and operators ---


def test_sales_statistics_are_for_admins(api: Api):
    show = api.new_show(general=50)
    customer = api.new_customer()
    book(api, customer, show, seats=["A-1-1"])
    placed = book(api, customer, show, section="GA", quantity=4)
    path, after = f"/shows/{show}/stats", {"after": placed["position"]}

    assert_problem(api.http.get(path, params=after, headers=customer), 403, "forbidden")
    stats = api.http.get(path, params=after, headers=api.admin()).json()

    assert stats["tickets_held"] == 5
    assert stats["bookings_placed"] == 2
    assert (stats["tickets_sold"], stats["revenue_cents"]) == (0, 0)


def test_operators_see_each_read_model_position_and_lag(api: Api):
    report = api.http.get("/projections").json()

    names = {p["name"] for p in report["projections"]}
    assert names == {
        "catalog",
        "seat_map",
        "bookings",
        "sales",
        "accounts",
        "reports",
        "tickets",
        "waitlist",
    }
    for p in report["projections"]:
        assert 0 <= p["position"] <= report["head"]
        assert p["lag_events"] == report["head"] - p["position"]
        assert p["lag_seconds"] >= 0


def test_metrics_count_requests_by_route_and_show_projection_positions(api: Api):
    show = api.new_show()
    api.http.get(f"/shows/{show}")

    text = httpx.get(api.base_url.removesuffix("/api/v1") + "/metrics").text

    assert 'route="/api/v1/shows/{show_id}"' in text
    assert "ticketblitz_http_request_duration_seconds_bucket" in text
    assert 'ticketblitz_projection_position{projection="catalog"}' in text
    assert 'ticketblitz_projection_lag_events{projection="bookings"}' in text


# --- bad input: always problem+json, never a 500 ---


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/shows", {"limit": 0}),
        ("/shows", {"limit": 101}),
        ("/shows", {"after": -1}),
        ("/shows", {"after": "soon"}),
        ("/shows", {"cursor": "not-a-cursor"}),
        ("/shows", {"cursor": "WyJ5ZXN0ZXJkYXkiLCAxXQ"}),  # valid base64, nonsense inside
        ("/shows", {"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}),
        ("/shows", {"from": "tomorrow"}),
        ("/shows", {"q": "x" * 201}),
        ("/shows", {"q": "jazz\x00"}),
        ("/shows", {"category": "\x00"}),
        ("/shows/not-a-uuid", {}),
        ("/shows/not-a-uuid/seats", {}),
        ("/me/bookings", {"limit": 500}),
    ],
)
def test_bad_queries_get_a_problem_not_a_500(api: Api, path: str, params: dict[str, Any]):
    headers = {"Authorization": api.new_customer()["Authorization"]} if "/me/" in path else {}
    r = api.http.get(path, params=params, headers=headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
