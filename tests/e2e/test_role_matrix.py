"""Every role against every endpoint: who may call what.

The people: nobody (no token), a customer, door staff, an organiser of another show, the
show's own organiser, an admin. Each endpoint of the OpenAPI document is listed here with the
roles it lets through; the test calls it as each of them and checks that the ones let through
are not refused (no 401 or 403: whatever else the answer says, e.g. 409 for an action that
does not apply, auth passed) and everyone else is (401 without a token, 403 with one). A new
endpoint must be added here: the test fails while one is missing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from PIL import Image

from commands.models import RecordPayment, RequestPayment
from domain.ids import ticket_id_for
from http_shell.container import Container
from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration

NOBODY, CUSTOMER, DOOR, OTHER_ORGANIZER, OWNER, ADMIN = (
    "nobody",
    "customer",
    "door",
    "other-organizer",
    "owner",
    "admin",
)
EVERYONE = frozenset({NOBODY, CUSTOMER, DOOR, OTHER_ORGANIZER, OWNER, ADMIN})
SIGNED_IN = EVERYONE - {NOBODY}
MANAGERS = frozenset({OWNER, ADMIN})  # the show's organiser and admins
SCANNERS = frozenset({DOOR, OWNER, ADMIN})  # door staff (any show), the organiser, admins
ORGANISERS = frozenset({OTHER_ORGANIZER, OWNER, ADMIN})
ADMINS = frozenset({ADMIN})
BOOKING_OWNER = frozenset({CUSTOMER, ADMIN})  # the booking's customer and admins
CUSTOMERS = frozenset({CUSTOMER})
PASSWORD = "correct horse battery"


@dataclass
class World:
    """What the calls act on: the people, and resources made for them."""

    api: Api
    people: dict[str, dict[str, str]]
    customer_booking: str
    throwaway_account: str
    container: Any = None  # the app's: pays a booking as the saga would (no workers here)
    paid_ticket: tuple[UUID, int] | None = None

    def ticket(self) -> tuple[UUID, int]:
        """A ticket of the customer's, on a show of the owner's, and the position that issued
        it: a booking paid through the payment commands, as the saga would."""
        if self.paid_ticket is None:
            held = self.api.http.post(
                "/bookings",
                json={"show_id": self.show(open_sale=True), "quantity": 1},
                headers=self.people[CUSTOMER],
            )
            assert held.status_code == 201, held.text
            booking_id = UUID(held.json()["booking_id"])
            intent = f"pi_matrix_{uuid4().hex[:12]}"
            payments = self.container.payments
            payments.request_payment(
                RequestPayment(booking_id=booking_id, payment_intent_id=intent)
            ).result(30)
            step = payments.record_payment(
                RecordPayment(booking_id=booking_id, payment_intent_id=intent, amount_cents=4500)
            ).result(30)
            assert step.status == "confirmed", step
            self.paid_ticket = (ticket_id_for(booking_id, 0), step.position)
        return self.paid_ticket

    def show(self, *, general: int = 0, open_sale: bool = False) -> str:
        """A show of the owner's (made fresh: some calls change or delete it)."""
        return self.show_at(general=general, open_sale=open_sale)[0]

    def show_at(self, *, general: int = 0, open_sale: bool = False) -> tuple[str, int]:
        """A fresh show of the owner's, and the log position that made it."""
        body = show_body(general)
        r = self.api.http.post("/shows", json=body, headers=self.people[OWNER])
        assert r.status_code == 201, r.text
        show_id: str = r.json()["show_id"]
        position: int = r.json()["position"]
        if open_sale:
            r = self.api.http.post(f"/shows/{show_id}/open-sale", headers=self.people[OWNER])
            assert r.status_code == 200, r.text
            position = r.json()["position"]
        return show_id, position


@dataclass
class Call:
    method: str
    path: str  # as the OpenAPI document names it
    allowed: frozenset[str]
    request: Callable[[World], dict[str, Any]] = field(default=lambda _: {})
    url: Callable[[World], str] | None = None  # the path with its ids filled in


def show_body(general: int = 0) -> dict[str, Any]:
    sections: list[dict[str, Any]] = [
        {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 10}]}
    ]
    if general:
        sections.append({"code": "GA", "kind": "general", "tier": "STD", "capacity": general})
    return {
        "title": f"Matrix night {uuid4().hex[:6]}",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": "2027-03-01T20:00:00+01:00",
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": sections,
    }


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def on_show(suffix: str = "", **show: Any) -> Callable[[World], str]:
    return lambda world: f"/shows/{world.show(**show)}{suffix}"


def waiting_entry(world: World) -> str:
    """The customer's entry on the waiting list of a fresh show, sold out by blocking its seats."""
    show_id = world.show(open_sale=True)
    seats = [f"A-1-{n}" for n in range(1, 11)]
    blocked = world.api.http.post(
        f"/shows/{show_id}/seats/block",
        json={"seats": seats, "reason": "sold out"},
        headers=world.people[OWNER],
    )
    assert blocked.status_code == 200, blocked.text
    joined = world.api.http.post(
        f"/shows/{show_id}/waitlist", json={"quantity": 1}, headers=world.people[CUSTOMER]
    )
    assert joined.status_code == 201, joined.text
    return f"/waitlist/{joined.json()['entry_id']}"


def presale_code(world: World) -> str:
    """A presale code of a fresh show of the owner's."""
    show_id = world.show()
    created = world.api.http.post(
        f"/shows/{show_id}/codes",
        json={"codes": ["MATRIX1"], "max_uses": 1},
        headers=world.people[OWNER],
    )
    assert created.status_code == 201, created.text
    return f"/shows/{show_id}/codes/MATRIX1"


def catalogued_show(suffix: str = "") -> Callable[[World], str]:
    """A fresh show once the catalog has it (the waiting room reads the show from it)."""

    def url(world: World) -> str:
        show_id, position = world.show_at()
        assert world.api.http.get(f"/shows/{show_id}?after={position}").status_code == 200
        return f"/shows/{show_id}{suffix}"

    return url


def reading_show(suffix: str = "") -> Callable[[World], str]:
    """A query on a fresh show, once the read models have it (`after`)."""

    def url(world: World) -> str:
        show_id, position = world.show_at()
        return f"/shows/{show_id}{suffix}?after={position}"

    return url


CALLS = [
    Call(
        "POST",
        "/auth/register",
        EVERYONE,
        lambda _: {
            "json": {
                "email": f"m-{uuid4().hex[:10]}@example.com",
                "password": PASSWORD,
                "name": "M",
            }
        },
    ),
    Call(
        "POST",
        "/auth/token",
        EVERYONE,
        lambda w: {"json": {"email": w.people[CUSTOMER]["email"], "password": PASSWORD}},
    ),
    Call("GET", "/me", SIGNED_IN),
    Call("GET", "/me/export", SIGNED_IN),
    # a wrong password: past the door, refused for what it says (nobody erased)
    Call("DELETE", "/me", SIGNED_IN, lambda _: {"json": {"password": "not my password"}}),
    Call("PATCH", "/me", SIGNED_IN, lambda _: {"json": {"name": "Still Me"}}),
    # a wrong current password: past the door, refused for what it says (no change made)
    Call(
        "POST",
        "/me/password",
        SIGNED_IN,
        lambda _: {"json": {"current": "not my password", "new": "another long one"}},
    ),
    Call("GET", "/me/bookings", SIGNED_IN),
    Call("GET", "/me/recommendations", CUSTOMERS),
    Call("GET", "/admin/accounts", ADMINS),
    Call(
        "GET",
        "/admin/accounts/{account_id}",
        ADMINS,
        url=lambda w: f"/admin/accounts/{w.throwaway_account}",
    ),
    Call(
        "POST",
        "/admin/accounts/{account_id}/role",
        ADMINS,
        lambda _: {"json": {"role": "customer"}},
        url=lambda w: f"/admin/accounts/{w.throwaway_account}/role",
    ),
    Call(
        "POST",
        "/admin/accounts/{account_id}/reactivate",
        ADMINS,
        url=lambda w: f"/admin/accounts/{w.throwaway_account}/reactivate",
    ),
    Call(
        "POST",
        "/admin/accounts/{account_id}/deactivate",
        ADMINS,
        url=lambda w: f"/admin/accounts/{w.throwaway_account}/deactivate",
    ),
    Call(  # each role tries it on an account of its own to erase (the shared one stays)
        "DELETE",
        "/admin/accounts/{account_id}",
        ADMINS,
        url=lambda w: f"/admin/accounts/{w.api.new_customer()['account_id']}",
    ),
    Call(
        "GET",
        "/admin/streams/{stream_id}/events",
        ADMINS,
        url=lambda w: f"/admin/streams/{w.customer_booking}/events",
    ),
    Call("POST", "/shows", ORGANISERS, lambda _: {"json": show_body()}),
    Call("GET", "/shows", EVERYONE),
    Call("GET", "/shows/{show_id}", EVERYONE, url=reading_show()),
    Call("GET", "/shows/{show_id}/seats", EVERYONE, url=reading_show("/seats")),
    Call("GET", "/shows/{show_id}/similar", EVERYONE, url=on_show("/similar")),
    Call("GET", "/shows/{show_id}/poster", EVERYONE, url=reading_show("/poster")),
    Call(
        "PATCH",
        "/shows/{show_id}",
        MANAGERS,
        lambda _: {"json": {"description": "Now with strings."}},
        url=on_show(),
    ),
    Call("DELETE", "/shows/{show_id}", MANAGERS, url=on_show()),
    Call("POST", "/shows/{show_id}/open-sale", MANAGERS, url=on_show("/open-sale")),
    Call(
        "POST", "/shows/{show_id}/close-sale", MANAGERS, url=on_show("/close-sale", open_sale=True)
    ),
    Call("POST", "/shows/{show_id}/cancel", MANAGERS, url=on_show("/cancel")),
    Call(
        "POST",
        "/shows/{show_id}/seats/block",
        MANAGERS,
        lambda _: {"json": {"seats": ["A-1-1"], "reason": "camera position"}},
        url=on_show("/seats/block"),
    ),
    Call(
        "POST",
        "/shows/{show_id}/seats/unblock",
        MANAGERS,
        lambda _: {"json": {"seats": ["A-1-1"]}},
        url=on_show("/seats/unblock"),
    ),
    Call(
        "PUT",
        "/shows/{show_id}/sections/{code}/capacity",
        MANAGERS,
        lambda _: {"json": {"capacity": 50}},
        url=on_show("/sections/GA/capacity", general=20),
    ),
    Call(
        "PUT",
        "/shows/{show_id}/poster",
        MANAGERS,
        lambda _: {"content": png(), "headers": {"Content-Type": "image/png"}},
        url=on_show("/poster"),
    ),
    Call("DELETE", "/shows/{show_id}/poster", MANAGERS, url=on_show("/poster")),
    Call("GET", "/shows/{show_id}/stats", ADMINS, url=reading_show("/stats")),
    Call("GET", "/shows/{show_id}/attendees.csv", MANAGERS, url=reading_show("/attendees.csv")),
    Call("GET", "/shows/{show_id}/sales", MANAGERS, url=reading_show("/sales")),
    # a secret that does not verify: 422 `invalid-secret` for those let through
    Call(
        "POST",
        "/shows/{show_id}/checkins",
        SCANNERS,
        lambda _: {"json": {"secret": "TB1.not.a.ticket", "gate": "North", "scan_id": "m-1"}},
        url=on_show("/checkins"),
    ),
    Call(
        "POST",
        "/shows/{show_id}/checkins/batch",
        SCANNERS,
        lambda _: {
            "json": {
                "scans": [
                    {
                        "secret": "TB1.not.a.ticket",
                        "gate": "North",
                        "scan_id": "m-1",
                        "scanned_at": "2027-03-01T19:30:00+01:00",
                    }
                ]
            }
        },
        url=on_show("/checkins/batch"),
    ),
    Call("GET", "/shows/{show_id}/checkins/stats", SCANNERS, url=reading_show("/checkins/stats")),
    Call(
        "GET",
        "/shows/{show_id}/checkins/offline-kit",
        SCANNERS,
        url=reading_show("/checkins/offline-kit"),
    ),
    Call(
        "POST",
        "/bookings",
        CUSTOMERS,
        url=lambda _: "/bookings",
        request=lambda w: {"json": {"show_id": w.show(open_sale=True), "quantity": 1}},
    ),
    Call(
        "GET",
        "/bookings/{booking_id}",
        BOOKING_OWNER,
        url=lambda w: f"/bookings/{w.customer_booking}",
    ),
    # the booking is cancelled already: the ones let through get 409, nothing changes
    Call(
        "GET",
        "/bookings/{booking_id}/tickets",
        BOOKING_OWNER | {OWNER},  # and the organiser of the booking's show
        url=lambda w: f"/bookings/{w.customer_booking}/tickets",
    ),
    Call(
        "POST",
        "/bookings/{booking_id}/cancel",
        BOOKING_OWNER,
        url=lambda w: f"/bookings/{w.customer_booking}/cancel",
    ),
    Call(
        "POST",
        "/bookings/{booking_id}/pay",
        BOOKING_OWNER,
        lambda _: {"json": {"payment_method": "pm_card_visa"}},
        url=lambda w: f"/bookings/{w.customer_booking}/pay",
    ),
    # the QR code is the ticket: its holder's (the customer's), the organiser's, the admins'
    Call(
        "GET",
        "/tickets/{ticket_id}/qr.svg",
        CUSTOMERS | MANAGERS,
        url=lambda w: "/tickets/{}/qr.svg?after={}".format(*w.ticket()),
    ),
    Call(
        "GET",
        "/tickets/{ticket_id}/qr.png",
        CUSTOMERS | MANAGERS,
        url=lambda w: "/tickets/{}/qr.png?after={}".format(*w.ticket()),
    ),
    # the ticket's holder (the customer) and admins; given to its own holder's address, so the
    # ones let through get 422 `transfer-to-self` and the ticket stays as it is
    Call(
        "POST",
        "/tickets/{ticket_id}/transfer",
        CUSTOMERS | ADMINS,
        lambda w: {"json": {"email": w.people[CUSTOMER]["email"]}},
        url=lambda w: f"/tickets/{w.ticket()[0]}/transfer",
    ),
    # tickets are free: the customer gets 409 `tickets-available` (let through)
    Call(
        "POST",
        "/shows/{show_id}/waitlist",
        CUSTOMERS,
        lambda _: {"json": {"quantity": 1}},
        url=on_show("/waitlist", open_sale=True),
    ),
    # an entry of the customer's (a fresh one for each caller): theirs and the admins' to remove
    Call("DELETE", "/waitlist/{entry_id}", BOOKING_OWNER, url=lambda w: waiting_entry(w)),
    # presale codes: the show's organiser and admins
    Call(
        "POST",
        "/shows/{show_id}/codes",
        MANAGERS,
        lambda _: {"json": {"count": 2, "max_uses": 5}},
        url=on_show("/codes"),
    ),
    Call("GET", "/shows/{show_id}/codes", MANAGERS, url=on_show("/codes")),
    Call("DELETE", "/shows/{show_id}/codes/{code}", MANAGERS, url=lambda w: presale_code(w)),
    # the waiting room: any signed-in account (a show without one: 409 `no-queue` for them;
    # a token nobody was given: 404)
    Call("POST", "/shows/{show_id}/queue", SIGNED_IN, url=catalogued_show("/queue")),
    Call(
        "GET",
        "/shows/{show_id}/queue/{token}",
        SIGNED_IN,
        url=catalogued_show("/queue/AAAAAAAAAAAAAAAAAAAAAA"),
    ),
    Call("GET", "/me/tickets", SIGNED_IN),
    Call("GET", "/me/waitlist", SIGNED_IN),  # each caller's own entries
    Call("GET", "/shows/{show_id}/waitlist", MANAGERS, url=reading_show("/waitlist")),
    # the booking is cancelled: no ticket left (409 for those let through)
    Call(
        "GET",
        "/bookings/{booking_id}/tickets.pdf",
        BOOKING_OWNER | {OWNER},
        url=lambda w: f"/bookings/{w.customer_booking}/tickets.pdf",
    ),
    # unsigned: refused for its signature (400), which is no role's business
    Call("POST", "/payments/stripe/webhook", EVERYONE, lambda _: {"json": {}}),
    Call("GET", "/projections", EVERYONE),
]


@pytest.fixture(scope="module")
def world(api: Api, container: Container) -> World:
    people: dict[str, dict[str, str]] = {NOBODY: {}}
    people[CUSTOMER] = api.new_customer()
    people[DOOR] = api.new_account("door")
    people[OTHER_ORGANIZER] = api.new_account("organizer")
    people[OWNER] = api.new_account("organizer")
    people[ADMIN] = {**api.admin(), "email": "", "account_id": ""}
    world = World(api, people, customer_booking="", throwaway_account="", container=container)
    placed = api.http.post(
        "/bookings",
        json={"show_id": world.show(open_sale=True), "quantity": 1},
        headers=people[CUSTOMER],
    )
    assert placed.status_code == 201, placed.text
    world.customer_booking = placed.json()["booking_id"]
    cancelled = api.http.post(
        f"/bookings/{world.customer_booking}/cancel", headers=people[CUSTOMER]
    )
    assert cancelled.status_code == 202, cancelled.text
    world.throwaway_account = api.new_customer()["account_id"]
    return world


def test_every_endpoint_of_the_openapi_document_is_in_the_matrix(api: Api):
    document = httpx.get(f"{api.server_url}/openapi.json", timeout=30).json()
    documented = {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, operations in document["paths"].items()
        for method in operations
        if path.startswith("/api/v1/")
    }

    assert documented == {(c.method, c.path) for c in CALLS}


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.method} {c.path}")
def test_each_role_is_let_through_or_refused_as_the_matrix_says(world: World, call: Call):
    answers: dict[str, int] = {}
    for role in sorted(EVERYONE):
        person = world.people[role]
        auth = {"Authorization": person["Authorization"]} if "Authorization" in person else {}
        request = call.request(world)
        headers = {**request.pop("headers", {}), **auth}
        url = call.url(world) if call.url is not None else call.path
        answer: httpx.Response = world.api.http.request(
            call.method, url, headers=headers, **request
        )
        assert answer.status_code < 500, (role, answer.text)
        answers[role] = answer.status_code

    expected = {
        role: "through" if role in call.allowed else ("401" if role == NOBODY else "403")
        for role in EVERYONE
    }
    # Every call names things that exist: a 404 would hide whether the caller was let
    # through (on public routes it cannot: e.g. a show the recommender has not seen yet).
    hiding = (401, 403) if call.allowed == EVERYONE else (401, 403, 404)
    seen = {
        role: "through" if status not in hiding else str(status) for role, status in answers.items()
    }
    assert seen == expected, answers
