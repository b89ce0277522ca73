"""The command API as a customer and an organiser use it, over HTTP against real servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import jwt
import pytest

from domain.booking import CANCELLED, HELD, Booking
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def assert_problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"].endswith("/" + kind)
    assert "Traceback" not in response.text
    return body


def inventory_of(container: Container, show: str) -> SeatInventory:
    """The show's seats as the event store has them: what a refused request must not change."""
    return container.store.get(inventory_id_for(UUID(show)), SeatInventory)


# --- accounts and tokens ---


def test_registering_the_same_email_twice_conflicts(api: Api):
    email = f"twice-{uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": "long enough pw", "name": "Twice"}
    first = api.http.post("/auth/register", json=body)
    assert first.status_code == 201
    UUID(first.json()["account_id"])
    again = api.http.post("/auth/register", json={**body, "email": email.upper()})
    assert_problem(again, 409, "account-exists")


def test_a_token_needs_the_right_password(api: Api):
    customer = api.new_customer()
    wrong = api.http.post("/auth/token", json={"email": customer["email"], "password": "nope1234"})
    assert_problem(wrong, 401, "invalid-credentials")
    unknown = api.http.post("/auth/token", json={"email": "ghost@example.com", "password": "x"})
    assert_problem(unknown, 401, "invalid-credentials")


def test_issued_token_has_type_and_expiry(api: Api):
    customer = api.new_customer()
    r = api.http.post(
        "/auth/token", json={"email": customer["email"], "password": "correct horse battery"}
    )
    assert r.json()["token_type"] == "bearer"
    assert r.json()["expires_in"] > 0


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(
            {"sub": str(uuid4()), "role": "admin", "exp": 9999999999}, key="", algorithm="none"
        ),
        jwt.encode(
            {"sub": str(uuid4()), "role": "admin", "exp": 9999999999},
            "wrong-secret-wrong-secret-wrong-secret!",
            algorithm="HS256",
        ),
        jwt.encode(
            {"sub": str(uuid4()), "role": "admin", "exp": datetime.now(UTC) - timedelta(minutes=1)},
            TEST_JWT_SECRET,
            algorithm="HS256",
        ),
        "not.a.token",
    ],
    ids=["alg-none", "wrong-signature", "expired", "garbage"],
)
def test_bad_tokens_are_refused(api: Api, token: str):
    r = api.http.post("/shows", json={}, headers={"Authorization": f"Bearer {token}"})
    assert_problem(r, 401, "unauthorized")


def test_a_tampered_token_is_refused(api: Api):
    customer = api.new_customer()
    header, _payload, signature = customer["Authorization"].split()[1].split(".")
    forged = jwt.encode(
        {"sub": customer["account_id"], "role": "admin", "exp": 9999999999},
        "x" * 40,
        algorithm="HS256",
    ).split(".")[1]
    r = api.http.post(
        "/shows", json={}, headers={"Authorization": f"Bearer {header}.{forged}.{signature}"}
    )
    assert_problem(r, 401, "unauthorized")


# --- shows ---


def test_only_admins_schedule_shows(api: Api):
    customer = api.new_customer()
    r = api.http.post("/shows", json={}, headers={"Authorization": customer["Authorization"]})
    assert_problem(r, 403, "forbidden")
    assert_problem(api.http.post("/shows", json={}), 401, "unauthorized")


def test_an_invalid_show_is_refused_with_its_errors(api: Api):
    body = {
        "title": "",
        "category": "jazz",
        "venue": "v",
        "starts_at": "2027-01-01T20:00:00",
        "currency": "EURO",
        "price_tiers": [],
        "sections": [],
    }
    problem = assert_problem(
        api.http.post("/shows", json=body, headers=api.admin()), 422, "validation-error"
    )
    fields = {e["loc"][-1] for e in problem["errors"]}
    assert {"title", "starts_at", "currency", "price_tiers", "sections"} <= fields


def test_a_section_on_an_unknown_tier_is_refused(api: Api):
    body = {
        "title": "T",
        "category": "jazz",
        "venue": "v",
        "starts_at": "2027-01-01T20:00:00Z",
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 100}],
        "sections": [{"code": "A", "kind": "general", "tier": "VIP", "capacity": 5}],
    }
    assert_problem(api.http.post("/shows", json=body, headers=api.admin()), 422, "invalid-show")


def test_sale_status_transitions(api: Api, container: Container):
    show = api.new_show(open_sale=False)
    admin = api.admin()
    customer = api.new_customer()
    hold = {"show_id": show, "seats": ["A-1-1"]}
    before = api.http.post("/bookings", json=hold, headers=customer)
    assert_problem(before, 409, "sale-not-open")
    assert inventory_of(container, show).claims == {}  # nothing held
    assert api.http.post(f"/shows/{show}/open-sale", headers=admin).status_code == 200
    assert_problem(
        api.http.post(f"/shows/{show}/open-sale", headers=admin), 409, "illegal-transition"
    )
    assert api.http.post(f"/shows/{show}/close-sale", headers=admin).status_code == 200
    assert_problem(api.http.post("/bookings", json=hold, headers=customer), 409, "sale-not-open")
    assert inventory_of(container, show).claims == {}
    cancelled = api.http.post(f"/shows/{show}/cancel", headers=admin, json={"reason": "storm"})
    assert cancelled.status_code == 200
    assert_problem(
        api.http.post(f"/shows/{show}/open-sale", headers=admin), 409, "illegal-transition"
    )


def test_unknown_show_is_not_found(api: Api):
    r = api.http.post(f"/shows/{uuid4()}/open-sale", headers=api.admin())
    assert_problem(r, 404, "not-found")
    customer = api.new_customer()
    r = api.http.post("/bookings", json={"show_id": str(uuid4()), "quantity": 1}, headers=customer)
    assert_problem(r, 404, "not-found")


# --- bookings ---


def test_holding_chosen_seats(api: Api, container: Container):
    show = api.new_show()
    customer = api.new_customer()
    r = api.http.post(
        "/bookings", json={"show_id": show, "seats": ["A-2-3", "A-2-4"]}, headers=customer
    )
    assert r.status_code == 201, r.text
    held = r.json()
    assert held["status"] == "held"
    assert held["seats"] == ["A-2-3", "A-2-4"]
    assert held["amount_cents"] == 9000
    assert held["currency"] == "EUR"
    expires = datetime.fromisoformat(held["hold_expires_at"])
    assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10)
    assert held["position"] >= 1
    booking = container.store.get(UUID(held["booking_id"]), Booking)
    assert booking.customer_id == UUID(customer["account_id"])
    inventory = container.store.get(inventory_id_for(UUID(show)), SeatInventory)
    assert inventory.holder["A-2-3"] == booking.id.hex


def test_seats_already_held_are_refused_by_name(api: Api, container: Container):
    show = api.new_show()
    first, second = api.new_customer(), api.new_customer()
    held = api.http.post(
        "/bookings", json={"show_id": show, "seats": ["A-1-1", "A-1-2"]}, headers=first
    )
    assert held.status_code == 201, held.text
    r = api.http.post(
        "/bookings", json={"show_id": show, "seats": ["A-1-2", "A-1-3"]}, headers=second
    )
    assert assert_problem(r, 409, "seats-unavailable")["seats"] == ["A-1-2"]
    # The refused request took nothing, not even its free seat A-1-3
    first_booking = UUID(held.json()["booking_id"]).hex
    assert inventory_of(container, show).holder == {"A-1-1": first_booking, "A-1-2": first_booking}


def test_best_available_and_general_admission(api: Api):
    show = api.new_show(rows=2, seats_per_row=10, general=3)
    customer = api.new_customer()
    best = api.http.post("/bookings", json={"show_id": show, "quantity": 2}, headers=customer)
    assert best.json()["seats"] == ["A-1-5", "A-1-6"]
    in_section = api.http.post(
        "/bookings", json={"show_id": show, "section": "A", "quantity": 3}, headers=customer
    )
    assert len(in_section.json()["seats"]) == 3
    ga = api.http.post(
        "/bookings", json={"show_id": show, "section": "GA", "quantity": 3}, headers=customer
    )
    assert ga.status_code == 201
    assert ga.json()["general"] == {"GA": 3}
    assert ga.json()["amount_cents"] == 9000
    sold_out = api.http.post(
        "/bookings", json={"show_id": show, "section": "GA", "quantity": 1}, headers=customer
    )
    assert assert_problem(sold_out, 409, "not-enough-tickets")["available"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"quantity": 11},
        {"quantity": 0},
        {"seats": []},
        {"seats": ["A-1-1", "A-1-1"]},
        {"seats": ["A-1-1"], "quantity": 1},
        {},
        {"seats": ["'; DROP TABLE x; --"]},
    ],
    ids=["too-many", "zero", "no-seats", "repeated", "both", "nothing", "injection"],
)
def test_invalid_booking_requests_are_422(api: Api, body: dict):
    customer = api.new_customer()
    r = api.http.post("/bookings", json={"show_id": str(uuid4()), **body}, headers=customer)
    assert_problem(r, 422, "validation-error")


def test_unknown_seats_and_sections_are_422(api: Api):
    show = api.new_show()
    customer = api.new_customer()
    r = api.http.post("/bookings", json={"show_id": show, "seats": ["Z-9-99"]}, headers=customer)
    assert assert_problem(r, 422, "unknown-seats")["seats"] == ["Z-9-99"]
    r = api.http.post(
        "/bookings", json={"show_id": show, "section": "Q", "quantity": 1}, headers=customer
    )
    assert_problem(r, 422, "unknown-section")


def test_admins_do_not_book_and_anonymous_callers_are_401(api: Api, container: Container):
    show = api.new_show()
    assert_problem(
        api.http.post("/bookings", json={"show_id": show, "quantity": 1}, headers=api.admin()),
        403,
        "forbidden",
    )
    assert_problem(
        api.http.post("/bookings", json={"show_id": show, "quantity": 1}), 401, "unauthorized"
    )
    assert inventory_of(container, show).claims == {}  # neither held a seat


def test_same_idempotency_key_and_body_books_once(api: Api, container: Container):
    show = api.new_show()
    customer = api.new_customer()
    headers = {**customer, "Idempotency-Key": uuid4().hex}
    body = {"show_id": show, "seats": ["A-3-1"]}
    first = api.http.post("/bookings", json=body, headers=headers)
    again = api.http.post("/bookings", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    inventory = container.store.get(inventory_id_for(UUID(show)), SeatInventory)
    assert len(inventory.claims) == 1
    other_body = api.http.post(
        "/bookings", json={"show_id": show, "seats": ["A-3-2"]}, headers=headers
    )
    assert_problem(other_body, 422, "idempotency-key-reused")
    after = inventory_of(container, show)
    assert len(after.claims) == 1 and "A-3-2" not in after.holder  # the reused key held nothing


def test_a_keyed_retry_finds_its_booking_even_without_the_stored_answer(
    api: Api, container: Container
):
    """Redis lost the answer (or was down): the booking id derived from the key still
    makes the retry land on the same booking instead of a second one."""
    show = api.new_show()
    customer = api.new_customer()
    key = uuid4().hex
    headers = {**customer, "Idempotency-Key": key}
    body = {"show_id": show, "quantity": 2}
    first = api.http.post("/bookings", json=body, headers=headers)
    assert container.redis is not None
    assert container.redis.delete(f"idem:{customer['account_id']}:bookings:{key}") == 1
    again = api.http.post("/bookings", json=body, headers=headers)
    assert again.status_code == 201
    assert again.json()["booking_id"] == first.json()["booking_id"]
    assert again.json()["seats"] == first.json()["seats"]
    inventory = container.store.get(inventory_id_for(UUID(show)), SeatInventory)
    assert len(inventory.claims) == 1


def test_cancelling_a_booking_releases_its_seats(api: Api, container: Container):
    show = api.new_show()
    owner, stranger = api.new_customer(), api.new_customer()
    booking = api.http.post(
        "/bookings", json={"show_id": show, "seats": ["A-4-4"]}, headers=owner
    ).json()
    booking_id = UUID(booking["booking_id"])
    url = f"/bookings/{booking_id}/cancel"
    assert_problem(api.http.post(url, headers=stranger), 403, "forbidden")
    # The stranger's cancel changed nothing: the booking is still held, its seat still its own
    assert container.store.get(booking_id, Booking).status == HELD
    assert inventory_of(container, show).holder["A-4-4"] == booking_id.hex
    cancelled = api.http.post(url, headers=owner)
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    assert container.store.get(booking_id, Booking).status == CANCELLED
    assert "A-4-4" not in inventory_of(container, show).holder
    assert_problem(api.http.post(url, headers=owner), 409, "illegal-transition")
    again = api.http.post("/bookings", json={"show_id": show, "seats": ["A-4-4"]}, headers=stranger)
    assert again.status_code == 201


def test_a_customer_who_keeps_letting_holds_go_must_wait_before_holding_again(
    api: Api, container: Container
):
    show = api.new_show()
    squatter, fan = api.new_customer(), api.new_customer()
    hold = {"show_id": show, "seats": ["A-5-1", "A-5-2"]}
    for _ in range(3):  # the default: three lapsed holds an hour
        booking = api.http.post("/bookings", json=hold, headers=squatter).json()
        cancelled = api.http.post(f"/bookings/{booking['booking_id']}/cancel", headers=squatter)
        assert cancelled.status_code == 202

    refused = api.http.post("/bookings", json=hold, headers=squatter)

    body = assert_problem(refused, 429, "too-many-lapsed-holds")
    assert "3 of your holds on this show lapsed within 60 minutes" in body["detail"]
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600  # an hour after the 1st cancel
    assert inventory_of(container, show).claims == {}  # the refused hold took nothing
    assert api.http.post("/bookings", json=hold, headers=fan).status_code == 201


def test_admins_may_cancel_any_booking(api: Api, container: Container):
    show = api.new_show()
    owner = api.new_customer()
    booking = api.http.post(
        "/bookings", json={"show_id": show, "quantity": 1}, headers=owner
    ).json()
    r = api.http.post(f"/bookings/{booking['booking_id']}/cancel", headers=api.admin())
    assert r.status_code == 202
    # Its seat is released: in the event store, in the seat map, and to the next customer
    [seat] = booking["seats"]
    assert container.store.get(UUID(booking["booking_id"]), Booking).status == CANCELLED
    assert inventory_of(container, show).claims == {}
    seat_map = api.http.get(f"/shows/{show}/seats", params={"after": r.json()["position"]})
    assert seat_map.status_code == 200, seat_map.text
    statuses = {
        s["seat"]: s["status"]
        for row in seat_map.json()["sections"][0]["rows"]
        for s in row["seats"]
    }
    assert statuses[seat] == "free"
    again = api.http.post(
        "/bookings", json={"show_id": show, "seats": [seat]}, headers=api.new_customer()
    )
    assert again.status_code == 201, again.text


def test_unknown_booking_is_404(api: Api):
    customer = api.new_customer()
    assert_problem(api.http.post(f"/bookings/{uuid4()}/cancel", headers=customer), 404, "not-found")


# --- the HTTP edge ---


def test_oversized_bodies_and_unknown_routes(api: Api):
    customer = api.new_customer()
    big = {"show_id": str(uuid4()), "payment_method": "x" * 400_000, "quantity": 1}
    assert_problem(api.http.post("/bookings", json=big, headers=customer), 413, "payload-too-large")
    assert_problem(api.http.get("/nowhere"), 404, "not-found")
    r = api.http.post(
        "/bookings", content=b"{not json", headers={**customer, "content-type": "application/json"}
    )
    assert_problem(r, 422, "validation-error")
