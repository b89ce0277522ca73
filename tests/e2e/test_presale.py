"""Presale codes against the real servers: the sale-window process manager opens the presale
by itself, only holds with a valid code are accepted until the sale opens (403
`code-required`, 422 `code-invalid`, 409 `code-used-up`), 50 fans on a `max_uses: 1` code at
once get exactly one hold, a lapsed hold gives its use back, and a discount is what Stripe
charges and what is refunded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from audit.verify import verify
from domain.booking import CONFIRMED, EXPIRED, REFUNDED
from tests.e2e.conftest import Api
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    in_days,
    intents_of,
    refunds_of,
    running_system,
    stripe_client,
    wait_until,
)
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "presale", read_models=True) as started:
        yield started


def presale_show(api: Api, presale_in: float | None, open_sale: bool = False) -> str:
    """A show (tomorrow; seated A at 45.00 STD, GA at 30.00 FLOOR) whose presale opens in
    `presale_in` seconds and whose general sale opens in three hours."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "title": "Fan club night",
        "category": "rock",
        "venue": "Blue Hall",
        "starts_at": in_days(1).isoformat(),
        "currency": "EUR",
        "price_tiers": [
            {"code": "STD", "price_cents": 4500},
            {"code": "FLOOR", "price_cents": 3000},
        ],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 10}]},
            {"code": "GA", "kind": "general", "tier": "FLOOR", "capacity": 100},
        ],
        "sale_opens_at": (now + timedelta(hours=3)).isoformat(),
    }
    if presale_in is not None:
        body["presale_opens_at"] = (now + timedelta(seconds=presale_in)).isoformat()
    return api.publish_show(body, open_sale=open_sale)


def create_codes(api: Api, show_id: str, **request: Any) -> list[dict[str, Any]]:
    r = api.http.post(f"/shows/{show_id}/codes", json=request, headers=api.admin())
    assert r.status_code == 201, r.text
    codes: list[dict[str, Any]] = r.json()["codes"]
    return codes


def hold(api: Api, fan: dict[str, str], show_id: str, **request: Any) -> httpx.Response:
    return api.http.post(
        "/bookings",
        json={"show_id": show_id, **request},
        headers={"Authorization": fan["Authorization"]},
    )


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"].endswith(f"/{kind}"), body
    return body


def by_code(system: SagaSystem, show_id: str, wanted: dict[str, Any]) -> list[dict[str, Any]]:
    """The sales report's revenue by code, once the read models show `wanted` in it."""
    api = system.api

    def report() -> list[dict[str, Any]] | None:
        r = api.http.get(f"/shows/{show_id}/sales?bucket=day", headers=api.admin())
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["by_code"]
        return found if wanted in found else None

    return wait_until(report, 30, f"{wanted} in the report by code")


def presale_opened(system: SagaSystem, show_id: str) -> bool:
    return bool(system.inventory(show_id).presale_open)


@pytest.fixture(scope="module")
def in_presale(system: SagaSystem) -> str:
    """A show whose presale the process manager opened by itself (no manual call)."""
    show_id = presale_show(system.api, presale_in=2)
    fan = system.api.new_customer()
    assert_problem(hold(system.api, fan, show_id, quantity=1), 409, "sale-not-open")
    wait_until(lambda: presale_opened(system, show_id), 30, "the presale to open by itself")
    return show_id


def test_the_presale_opens_by_itself_and_then_a_hold_needs_a_valid_code(
    system: SagaSystem, in_presale: str
):
    api = system.api
    [code] = create_codes(api, in_presale, codes=["Fan-Club-1"], max_uses=5)
    assert code["code"] == "FAN-CLUB-1" and code["uses"] == 0

    fan = api.new_customer()
    assert_problem(hold(api, fan, in_presale, quantity=1), 403, "code-required")
    unknown = assert_problem(
        hold(api, fan, in_presale, quantity=1, code="NOPE1234"), 422, "code-invalid"
    )
    assert unknown["reason"] == "unknown"

    held = hold(api, fan, in_presale, quantity=2, section="GA", code="  fan-club-1 ")
    assert held.status_code == 201, held.text
    booking = system.booking(held.json()["booking_id"])
    assert booking.code == "FAN-CLUB-1" and booking.amount_cents == 6000
    listed = api.http.get(f"/shows/{in_presale}/codes", headers=api.admin()).json()
    assert [(c["code"], c["uses"]) for c in listed["items"]] == [("FAN-CLUB-1", 1)]


def test_revoked_expired_not_yet_valid_and_wrong_tier_codes_say_why(
    system: SagaSystem, in_presale: str
):
    api = system.api
    now = datetime.now(UTC)
    create_codes(api, in_presale, codes=["REVOKEME"], max_uses=5)
    create_codes(
        api,
        in_presale,
        codes=["SOONGONE"],
        max_uses=5,
        valid_until=(now + timedelta(seconds=2)).isoformat(),
    )
    create_codes(
        api,
        in_presale,
        codes=["TOMORROW"],
        max_uses=5,
        valid_from=(now + timedelta(hours=2)).isoformat(),
    )
    create_codes(api, in_presale, codes=["FLOORONLY"], max_uses=5, tiers=["FLOOR"])
    r = api.http.delete(f"/shows/{in_presale}/codes/revokeme", headers=api.admin())
    assert r.status_code == 204, r.text
    fan = api.new_customer()

    def reason(**request: Any) -> str:
        body = assert_problem(hold(api, fan, in_presale, **request), 422, "code-invalid")
        return str(body["reason"])

    assert reason(quantity=1, code="REVOKEME") == "revoked"
    assert reason(quantity=1, code="TOMORROW") == "not yet valid"
    assert reason(seats=["A-1-1"], code="FLOORONLY") == "wrong tier"
    wait_until(lambda: datetime.now(UTC) > now + timedelta(seconds=2.5), 10, "the code to expire")
    assert reason(quantity=1, code="SOONGONE") == "expired"
    # a code of some tiers, asked for tickets anywhere, gets them in its tiers
    held = hold(api, fan, in_presale, quantity=1, code="FLOORONLY")
    assert held.status_code == 201, held.text
    assert held.json()["general"] == {"GA": 1} and held.json()["amount_cents"] == 3000


def test_fifty_fans_at_once_on_a_single_use_code_get_exactly_one_hold(
    system: SagaSystem, in_presale: str
):
    api = system.api
    [code] = create_codes(api, in_presale, count=1, max_uses=1)
    assert len(code["code"]) == 12
    fans = [api.new_customer() for _ in range(50)]

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as http:
            return list(
                await asyncio.gather(
                    *(
                        http.post(
                            "/bookings",
                            json={"show_id": in_presale, "quantity": 1, "code": code["code"]},
                            headers={"Authorization": fan["Authorization"]},
                        )
                        for fan in fans
                    )
                )
            )

    answers = asyncio.run(all_at_once())

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] + [409] * 49, statuses
    for refused in (r for r in answers if r.status_code == 409):
        assert refused.json()["type"].endswith("/code-used-up"), refused.text
    assert system.inventory(in_presale).code_uses[code["code"]] == 1


def test_a_lapsed_hold_gives_its_use_back(system: SagaSystem, in_presale: str):
    [code] = create_codes(system.api, in_presale, codes=["ONCEONLY"], max_uses=1)
    short = system.short_hold_api  # holds of 3 s, expired by the workers
    held = hold(short, short.new_customer(), in_presale, quantity=1, code=code["code"])
    assert held.status_code == 201, held.text
    assert_problem(
        hold(short, short.new_customer(), in_presale, quantity=1, code="ONCEONLY"),
        409,
        "code-used-up",
    )

    system.wait_for_status(held.json()["booking_id"], {EXPIRED}, timeout=30)

    again = hold(short, short.new_customer(), in_presale, quantity=1, code="ONCEONLY")
    assert again.status_code == 201, again.text


def test_a_discount_is_what_is_charged_and_what_is_refunded(system: SagaSystem):
    api = system.api
    show_id = presale_show(api, presale_in=None, open_sale=True)  # the general sale
    create_codes(api, show_id, codes=["TWENTYOFF"], max_uses=10, discount_percent=20)
    fan = api.new_customer()

    held = hold(api, fan, show_id, seats=["A-1-1", "A-1-2"], code="TWENTYOFF", payment_method=VISA)
    assert held.status_code == 201, held.text
    assert held.json()["amount_cents"] == 7200  # 2 x 45.00, 20 % off
    booking_id = held.json()["booking_id"]
    booking = system.wait_for_status(booking_id, {CONFIRMED}, timeout=30)
    assert booking.paid_cents == 7200
    client = stripe_client(system.endpoints)
    [intent] = intents_of(client, [booking_id])[booking_id]
    assert (intent.status, intent.amount) == ("succeeded", 7200)
    sold = {"code": "TWENTYOFF", "tickets": 2, "revenue_cents": 7200}
    assert by_code(system, show_id, sold) == [sold]  # the organiser's report

    r = api.http.post(
        f"/bookings/{booking_id}/cancel", headers={"Authorization": fan["Authorization"]}
    )
    assert r.status_code == 202, r.text
    refunded = system.wait_for_status(booking_id, {REFUNDED}, timeout=30)
    assert refunded.refunded_cents == 7200
    assert [r.amount for r in refunds_of(client, intent.id)] == [7200]
    given_back = {"code": "TWENTYOFF", "tickets": 0, "revenue_cents": 0}
    assert by_code(system, show_id, given_back) == [given_back]


def test_a_price_per_ticket_code_during_the_general_sale(system: SagaSystem):
    api = system.api
    show_id = presale_show(api, presale_in=None, open_sale=True)
    create_codes(api, show_id, codes=["MEMBERS"], max_uses=10, price_cents=2500)
    held = hold(api, api.new_customer(), show_id, quantity=3, section="A", code="members")
    assert held.status_code == 201, held.text
    assert held.json()["amount_cents"] == 7500
    plain = hold(api, api.new_customer(), show_id, quantity=1, section="A")
    assert plain.status_code == 201 and plain.json()["amount_cents"] == 4500


def test_the_organiser_lists_codes_page_by_page_and_revoking_keeps_existing_holds(
    system: SagaSystem,
):
    api = system.api
    show_id = presale_show(api, presale_in=None, open_sale=True)
    created = create_codes(api, show_id, count=5, max_uses=2)
    first = created[0]["code"]
    held = hold(api, api.new_customer(), show_id, quantity=1, code=first)
    assert held.status_code == 201, held.text

    page = api.http.get(f"/shows/{show_id}/codes?limit=3", headers=api.admin()).json()
    assert (page["total"], len(page["items"]), page["next_offset"]) == (5, 3, 3)
    rest = api.http.get(f"/shows/{show_id}/codes?limit=3&offset=3", headers=api.admin()).json()
    assert rest["next_offset"] is None
    listed = {c["code"]: c for c in page["items"] + rest["items"]}
    assert set(listed) == {c["code"] for c in created}
    assert listed[first]["uses"] == 1

    assert (
        api.http.delete(f"/shows/{show_id}/codes/{first}", headers=api.admin()).status_code == 204
    )
    assert (
        api.http.delete(f"/shows/{show_id}/codes/{first}", headers=api.admin()).status_code == 204
    )
    assert_problem(
        hold(api, api.new_customer(), show_id, quantity=1, code=first), 422, "code-invalid"
    )
    still = system.booking(held.json()["booking_id"])
    assert still.code == first and system.inventory(show_id).claim_of(UUID(str(still.id)))
    after = api.http.get(f"/shows/{show_id}/codes", headers=api.admin()).json()
    assert {c["code"]: c["revoked"] for c in after["items"]}[first] is True
    assert_problem(
        api.http.delete(f"/shows/{show_id}/codes/NOSUCHCODE", headers=api.admin()), 404, "not-found"
    )


def test_a_patch_moves_the_presale_and_the_process_manager_follows(system: SagaSystem):
    api = system.api
    show_id = presale_show(api, presale_in=3600)  # in an hour: moved to a few seconds from now
    admin = api.admin()
    soon = datetime.now(UTC) + timedelta(seconds=2)
    r = api.http.patch(
        f"/shows/{show_id}", json={"presale_opens_at": soon.isoformat()}, headers=admin
    )
    assert r.status_code == 200, r.text
    wait_until(lambda: presale_opened(system, show_id), 30, "the moved presale to open")
    wait_until(lambda: catalog_presale(api, show_id) == soon, 30, "the catalog to show the presale")
    late = datetime.now(UTC) + timedelta(hours=4)  # after the general sale: refused
    r = api.http.patch(
        f"/shows/{show_id}", json={"presale_opens_at": late.isoformat()}, headers=admin
    )
    assert_problem(r, 422, "invalid-show")
    # dropping the presale closes it: no hold at all until the sale opens
    r = api.http.patch(f"/shows/{show_id}", json={"presale_opens_at": None}, headers=admin)
    assert r.status_code == 200, r.text
    assert not presale_opened(system, show_id)
    wait_until(lambda: catalog_presale(api, show_id) is None, 30, "the catalog to drop it")
    fan = api.new_customer()
    assert_problem(hold(api, fan, show_id, quantity=1, code="ANYCODE1"), 409, "sale-not-open")


def catalog_presale(api: Api, show_id: str) -> datetime | bool | None:
    """The presale opening GET /shows/{id} shows (False while the show is not there yet)."""
    answer = api.http.get(f"/shows/{show_id}")
    if answer.status_code != 200:
        return False
    value = answer.json()["presale_opens_at"]
    return None if value is None else datetime.fromisoformat(value)


def test_audit_verify_finds_the_presale_log_of_this_module_clean(system: SagaSystem):
    """Runs last: every hold above (50 at once on one code, revoked, expired, lapsed, ...)
    kept the presale rules at every point of the log."""
    report = verify(system.store, refund_grace=timedelta(minutes=15))
    assert report.events > 0
    assert report.violation_count == 0, "\n".join(str(v) for v in report.violations)
