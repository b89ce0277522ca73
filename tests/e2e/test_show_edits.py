"""An organiser's edits and deletions against the real servers: `PATCH /shows/{id}` (details,
a reschedule, the sale window, prices) shows in `GET /shows/{id}`, a repricing is for new holds
only, a reschedule moves when holds stop, a moved sale window opens at its new time (the
workers re-arm it), `DELETE /shows/{id}` only for a show that never had a booking, only the
show's organiser or an admin may do any of it, and the log passes `audit verify`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from audit.replay import replay_stream
from audit.verify import verify
from domain.booking import CONFIRMED
from domain.show import DELETED, ON_SALE, SCHEDULED, Show
from tests.e2e.conftest import Api
from tests.e2e.saga_support import VISA, SagaSystem, in_days, running_system, wait_until
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
PRICE = 4500


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "show-edits", read_models=True) as started:
        yield started


@pytest.fixture(scope="module")
def organiser(system: SagaSystem) -> dict[str, str]:
    return system.api.new_account("organizer")


def show_body(starts_at: datetime, **changes: Any) -> dict[str, Any]:
    return {
        "title": f"Edited night {uuid4().hex[:6]}",
        "description": "Two sets.",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": starts_at.isoformat(),
        "currency": "EUR",
        "price_tiers": [
            {"code": "STD", "price_cents": PRICE},
            {"code": "FLOOR", "price_cents": 3000},
        ],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 10}]},
            {"code": "GA", "kind": "general", "tier": "FLOOR", "capacity": 20},
        ],
        **changes,
    }


def new_show(
    api: Api,
    by: dict[str, str],
    starts_at: datetime | None = None,
    open_sale: bool = True,
    **changes: Any,
) -> str:
    """A show scheduled (and its sale opened) by `by`, an organiser or the admin."""
    body = show_body(starts_at or in_days(30), **changes)
    r = api.http.post("/shows", json=body, headers=auth(by))
    assert r.status_code == 201, r.text
    show_id: str = r.json()["show_id"]
    if open_sale:
        r = api.http.post(f"/shows/{show_id}/open-sale", headers=auth(by))
        assert r.status_code == 200, r.text
    return show_id


def auth(who: dict[str, str]) -> dict[str, str]:
    return {"Authorization": who["Authorization"]}


def edit(api: Api, show_id: str, by: dict[str, str], **changes: Any) -> httpx.Response:
    return api.http.patch(f"/shows/{show_id}", json=changes, headers=auth(by))


def edited(api: Api, show_id: str, by: dict[str, str], **changes: Any) -> dict[str, Any]:
    r = edit(api, show_id, by, **changes)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    assert answer["show_id"] == show_id
    return answer


def details(api: Api, show_id: str, after: int) -> dict[str, Any]:
    r = api.http.get(f"/shows/{show_id}", params={"after": after})
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def hold(api: Api, customer: dict[str, str], show_id: str, **request: Any) -> httpx.Response:
    body = {"show_id": show_id, **(request or {"quantity": 1})}
    return api.http.post("/bookings", json=body, headers=auth(customer))


def held(api: Api, customer: dict[str, str], show_id: str, **request: Any) -> dict[str, Any]:
    r = hold(api, customer, show_id, **request)
    assert r.status_code == 201, r.text
    booking: dict[str, Any] = r.json()
    return booking


def problem_type(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith(PROBLEM), r.text
    kind: str = r.json()["type"]
    return kind.rsplit("/", 1)[-1]


def same_time(shown: str | None, expected: datetime | None) -> bool:
    if shown is None or expected is None:
        return shown is None and expected is None
    return datetime.fromisoformat(shown) == expected


def stored_show(system: SagaSystem, show_id: str) -> Show:
    show: Show = system.store.get(UUID(show_id), Show)
    return show


# --- each edit, visible in GET /shows/{id} ---


def test_an_organiser_edits_the_details_and_the_show_reads_them(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    show_id = new_show(api, organiser)

    answer = edited(
        api,
        show_id,
        organiser,
        title="Jazz at the Docks",
        description="Three sets,\nno encore.",
        category="blues",
        venue="Dock Arena",
    )

    assert answer["status"] == ON_SALE
    shown = details(api, show_id, answer["position"])
    assert {k: shown[k] for k in ("title", "description", "category", "venue")} == {
        "title": "Jazz at the Docks",
        "description": "Three sets,\nno encore.",
        "category": "blues",
        "venue": "Dock Arena",
    }
    assert shown["organizer_id"] == organiser["account_id"]
    assert shown["status"] == ON_SALE


def test_an_edit_to_what_the_show_already_is_records_nothing(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    show_id = new_show(api, organiser, title="Same night")
    version = stored_show(system, show_id).version

    edited(
        api,
        show_id,
        organiser,
        title="Same night",
        price_tiers=[{"code": "STD", "price_cents": PRICE}],
    )

    assert stored_show(system, show_id).version == version


def test_a_reschedule_moves_the_start_and_holds_stop_at_the_new_start(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    customer = api.new_customer()
    show_id = new_show(api, organiser, starts_at=in_days(3))
    new_start = datetime.now(UTC) + timedelta(seconds=10)

    answer = edited(api, show_id, organiser, starts_at=new_start.isoformat())

    shown = details(api, show_id, answer["position"])
    assert same_time(shown["starts_at"], new_start)
    assert same_time(shown["sale_closes_at"], new_start)  # the default close moved with it
    show = stored_show(system, show_id)
    assert (show.starts_at, show.sale_closes_at) == (new_start, new_start)
    assert system.inventory(show_id).starts_at == new_start  # the same transaction's
    held(api, customer, show_id)  # still before the new start

    wait_until(lambda: datetime.now(UTC) > new_start, 30, "the new start to pass")

    r = hold(api, customer, show_id)
    assert r.status_code == 409, r.text
    assert problem_type(r) == "sale-not-open"
    # A show that started is edited no more, nor rescheduled.
    for change in ({"title": "Too late"}, {"starts_at": in_days(2).isoformat()}):
        r = edit(api, show_id, organiser, **change)
        assert r.status_code == 409, r.text
        assert problem_type(r) == "illegal-transition"
        assert "started" in r.json()["detail"]


def test_a_reschedule_earlier_than_the_windows_close_needs_the_window_too(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    starts_at = in_days(10)
    closes_at = starts_at - timedelta(days=1)
    show_id = new_show(api, organiser, starts_at=starts_at, sale_closes_at=closes_at.isoformat())
    earlier = in_days(5)

    r = edit(api, show_id, organiser, starts_at=earlier.isoformat())
    assert r.status_code == 422, r.text
    assert problem_type(r) == "invalid-show"
    assert "sale_closes_at" in r.json()["detail"]

    new_close = earlier - timedelta(hours=2)
    answer = edited(
        api, show_id, organiser, starts_at=earlier.isoformat(), sale_closes_at=new_close.isoformat()
    )
    shown = details(api, show_id, answer["position"])
    assert same_time(shown["starts_at"], earlier)
    assert same_time(shown["sale_closes_at"], new_close)


def test_a_repricing_is_paid_by_new_holds_only(system: SagaSystem, organiser: dict[str, str]):
    api = system.api
    show_id = new_show(api, organiser)
    before, after = api.new_customer(), api.new_customer()
    early = held(api, before, show_id, seats=["A-1-1"])
    assert early["amount_cents"] == PRICE

    answer = edited(
        api,
        show_id,
        organiser,
        price_tiers=[{"code": "STD", "price_cents": 6000}, {"code": "FLOOR", "price_cents": 2500}],
    )

    late = held(api, after, show_id, seats=["A-1-2"])
    assert late["amount_cents"] == 6000
    assert held(api, after, show_id, section="GA", quantity=2)["amount_cents"] == 2 * 2500
    shown = details(api, show_id, answer["position"])
    assert shown["price_tiers"] == {"STD": 6000, "FLOOR": 2500}
    assert {s["code"]: s["price_cents"] for s in shown["sections"]} == {"A": 6000, "GA": 2500}
    # The hold placed before the repricing pays the old price.
    for booking, fan, amount in ((early, before, PRICE), (late, after, 6000)):
        r = pay(api, fan, booking["booking_id"])
        assert r.status_code == 200, r.text
        assert r.json()["status"] == CONFIRMED
        paid = system.booking(booking["booking_id"])
        assert (paid.amount_cents, paid.paid_cents) == (amount, amount)


def pay(api: Api, customer: dict[str, str], booking_id: str) -> httpx.Response:
    """Pay with a card, once the saga created the booking's payment intent (503 until then)."""

    def attempt() -> httpx.Response | None:
        r = api.http.post(
            f"/bookings/{booking_id}/pay", json={"payment_method": VISA}, headers=auth(customer)
        )
        return None if r.status_code == 503 else r

    return wait_until(attempt, 30, f"booking {booking_id}'s payment intent")


# --- the sale window: edits re-arm its opening and closing ---


def open_task_due(system: SagaSystem, show_id: str) -> datetime | None:
    with system.store.connection() as conn:
        row = conn.execute(
            "SELECT due_at FROM sale_window_tasks WHERE show_id = %s AND action = 'open'",
            (UUID(show_id),),
        ).fetchone()
    return None if row is None else row[0]


def test_a_sale_window_moved_later_opens_at_its_new_time_not_the_old(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    customer = api.new_customer()
    now = datetime.now(UTC)
    old_opening = now + timedelta(seconds=10)
    new_opening = now + timedelta(seconds=25)
    show_id = new_show(
        api, organiser, starts_at=in_days(1), open_sale=False, sale_opens_at=old_opening.isoformat()
    )

    answer = edited(api, show_id, organiser, sale_opens_at=new_opening.isoformat())

    assert datetime.now(UTC) < old_opening, "too slow: the edit came after the old opening"
    assert answer["status"] == SCHEDULED
    assert same_time(details(api, show_id, answer["position"])["sale_opens_at"], new_opening)
    wait_until(lambda: open_task_due(system, show_id) == new_opening, 30, "the task re-armed")
    # Past the old opening time (by 4 polls of the workers), the sale is still not open.
    wait_until(
        lambda: datetime.now(UTC) > old_opening + timedelta(seconds=2), 30, "the old time to pass"
    )
    assert stored_show(system, show_id).status == SCHEDULED
    r = hold(api, customer, show_id)
    assert r.status_code == 409, r.text
    assert problem_type(r) == "sale-not-open"

    wait_until(
        lambda: stored_show(system, show_id).status == ON_SALE, 60, "the sale to open, later"
    )

    [opened] = [
        e for e in replay_stream(system.store, UUID(show_id)).events if e.type == "Show.SaleOpened"
    ]
    assert opened.time >= new_opening
    held(api, customer, show_id)


def test_a_sale_window_without_an_opening_time_is_disarmed(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    opening = in_days(0.5)
    show_id = new_show(
        api, organiser, starts_at=in_days(1), open_sale=False, sale_opens_at=opening.isoformat()
    )
    wait_until(lambda: open_task_due(system, show_id) == opening, 30, "the open task armed")

    answer = edited(api, show_id, organiser, sale_opens_at=None)

    assert details(api, show_id, answer["position"])["sale_opens_at"] is None
    wait_until(lambda: open_task_due(system, show_id) is None, 30, "the open task disarmed")


# --- delete ---


def head_position(api: Api) -> int:
    """The log's head now: what a query waits for to see everything written so far."""
    position: int = httpx.get(f"{api.server_url}/health", timeout=30).json()["position"]
    return position


def test_a_show_that_never_had_a_booking_is_deleted_and_leaves_the_catalog(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    show_id = new_show(api, organiser)

    r = api.http.delete(f"/shows/{show_id}", headers=auth(organiser))

    assert r.status_code == 204, r.text
    assert r.content == b""

    def gone() -> bool:
        return api.http.get(f"/shows/{show_id}").status_code == 404

    wait_until(gone, 30, "the show to leave the catalog")
    r = api.http.get(f"/shows/{show_id}")
    assert problem_type(r) == "not-found"
    seats = api.http.get(f"/shows/{show_id}/seats", params={"after": head_position(api)})
    assert seats.status_code == 404, seats.text
    listed = api.http.get("/shows", params={"limit": 100}).json()["items"]
    assert show_id not in {s["show_id"] for s in listed}
    # Its events stay in the log; it takes no more commands, and no hold.
    assert stored_show(system, show_id).status == DELETED
    for method, path, body in (
        ("PATCH", f"/shows/{show_id}", {"title": "Back"}),
        ("POST", f"/shows/{show_id}/open-sale", None),
        ("POST", f"/shows/{show_id}/close-sale", None),
        ("POST", f"/shows/{show_id}/cancel", None),
        ("DELETE", f"/shows/{show_id}", None),
    ):
        r = api.http.request(method, path, json=body, headers=auth(organiser))
        assert r.status_code == 404, (method, path, r.text)
        assert problem_type(r) == "not-found"
    r = hold(api, api.new_customer(), show_id)
    assert r.status_code == 409, r.text
    assert problem_type(r) == "sale-not-open"


def test_a_show_that_had_a_booking_must_be_cancelled_instead(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    show_id = new_show(api, organiser)
    fan = api.new_customer()
    booking = held(api, fan, show_id)
    # Even once that booking is cancelled and its seats free again.
    r = api.http.post(
        f"/bookings/{booking['booking_id']}/cancel",
        headers={**auth(fan), "Idempotency-Key": str(uuid4())},
    )
    assert r.status_code == 202, r.text
    wait_until(
        lambda: system.inventory(show_id).claim_of(UUID(booking["booking_id"])) is None,
        30,
        "the seats released",
    )

    r = api.http.delete(f"/shows/{show_id}", headers=auth(organiser))

    assert r.status_code == 409, r.text
    assert problem_type(r) == "cancel-instead"
    assert "cancel" in r.json()["detail"]
    assert details(api, show_id, 0)["status"] == ON_SALE
    r = api.http.post(f"/shows/{show_id}/cancel", headers=auth(organiser))
    assert r.status_code == 200, r.text


# --- who may ---


def test_only_the_shows_organiser_or_an_admin_may_change_it(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    show_id = new_show(api, organiser)
    customer = api.new_customer()
    another_organiser = api.new_account("organizer")
    version = stored_show(system, show_id).version
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PATCH", f"/shows/{show_id}", {"title": "Hijacked"}),
        ("POST", f"/shows/{show_id}/close-sale", None),
        ("POST", f"/shows/{show_id}/open-sale", None),
        ("POST", f"/shows/{show_id}/cancel", {"reason": "not mine"}),
        ("DELETE", f"/shows/{show_id}", None),
    ]

    for who in (customer, another_organiser):
        for method, path, body in attempts:
            r = api.http.request(method, path, json=body, headers=auth(who))
            assert r.status_code == 403, (method, path, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)

    assert stored_show(system, show_id).version == version  # nothing was written
    # The admin manages every show; the organiser their own.
    r = edit(api, show_id, {"Authorization": api.admin()["Authorization"]}, venue="Admin Hall")
    assert r.status_code == 200, r.text
    assert edited(api, show_id, organiser, venue="Own Hall")["status"] == ON_SALE
    r = api.http.post(f"/shows/{show_id}/close-sale", headers=auth(organiser))
    assert r.status_code == 200, r.text


def test_an_unknown_show_is_not_found(system: SagaSystem, organiser: dict[str, str]):
    r = edit(system.api, str(uuid4()), organiser, title="Nobody's")

    assert r.status_code == 404, r.text
    assert problem_type(r) == "not-found"


# --- hostile input: a clear 422 and nothing written ---


def hostile_edits() -> dict[str, tuple[dict[str, Any], str | None]]:
    """Bodies and the problem type they answer (None: the body's validation)."""
    return {
        "empty body": ({}, None),
        "unknown field": ({"capacity": 10}, None),
        "null title": ({"title": None}, None),
        "null start": ({"starts_at": None}, None),
        "control character in the title": ({"title": "Jazz\x07night"}, None),
        "line break in the venue": ({"venue": "Blue\nHall"}, None),
        "bidi control in the category": ({"category": "jazz\u202e"}, None),
        "NUL in the description": ({"description": "two\x00sets"}, None),
        "huge price": ({"price_tiers": [{"code": "STD", "price_cents": 10**12}]}, None),
        "negative price": ({"price_tiers": [{"code": "STD", "price_cents": -1}]}, None),
        "price as a string": ({"price_tiers": [{"code": "STD", "price_cents": "4500"}]}, None),
        "price as a float": ({"price_tiers": [{"code": "STD", "price_cents": 45.5}]}, None),
        "repeated tier": (
            {
                "price_tiers": [
                    {"code": "STD", "price_cents": 1},
                    {"code": "STD", "price_cents": 2},
                ]
            },
            None,
        ),
        "no tiers": ({"price_tiers": []}, None),
        "unknown tier": (
            {"price_tiers": [{"code": "VIP", "price_cents": 1}]},
            "invalid-show",
        ),
        "start in the past": ({"starts_at": "2020-01-01T20:00:00+00:00"}, "invalid-show"),
        "start in eleven years": ({"starts_at": in_days(11 * 366).isoformat()}, "invalid-show"),
        "start without a time zone": ({"starts_at": "2031-03-01T20:00:00"}, None),
        "start as a number": ({"starts_at": 1900000000}, None),
        "opening without a time zone": ({"sale_opens_at": "2031-03-01T20:00:00"}, None),
        "opening after the start": ({"sale_opens_at": in_days(40).isoformat()}, "invalid-show"),
        "closing after the start": ({"sale_closes_at": in_days(40).isoformat()}, "invalid-show"),
        "opening in the past": ({"sale_opens_at": in_days(-1).isoformat()}, "invalid-show"),
        "title too long": ({"title": "x" * 201}, None),
    }


@pytest.mark.parametrize("case", list(hostile_edits()))
def test_a_hostile_edit_is_refused_and_writes_nothing(
    system: SagaSystem, organiser: dict[str, str], case: str
):
    api = system.api
    body, kind = hostile_edits()[case]
    show_id = new_show(api, organiser)
    version = stored_show(system, show_id).version

    r = api.http.patch(f"/shows/{show_id}", json=body, headers=auth(organiser))

    assert r.status_code == 422, r.text
    if kind is not None:
        assert problem_type(r) == kind
    else:
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["errors"]
    assert stored_show(system, show_id).version == version


def test_a_cancelled_show_cannot_be_edited(system: SagaSystem, organiser: dict[str, str]):
    api = system.api
    show_id = new_show(api, organiser)
    r = api.http.post(f"/shows/{show_id}/cancel", headers=auth(organiser))
    assert r.status_code == 200, r.text

    r = edit(api, show_id, organiser, title="Back on")

    assert r.status_code == 409, r.text
    assert problem_type(r) == "illegal-transition"
    assert "cancelled" in r.json()["detail"]


# --- the log ---


def test_the_log_with_every_edit_and_deletion_passes_the_audit(
    system: SagaSystem, organiser: dict[str, str]
):
    api = system.api
    show_id = new_show(api, organiser)
    held(api, api.new_customer(), show_id)
    edited(
        api,
        show_id,
        organiser,
        title="Audited night",
        starts_at=in_days(31).isoformat(),
        sale_closes_at=in_days(30.5).isoformat(),
        price_tiers=[{"code": "STD", "price_cents": 5000}],
    )
    doomed = new_show(api, organiser)
    r = api.http.delete(f"/shows/{doomed}", headers=auth(organiser))
    assert r.status_code == 204, r.text

    shown = {e.type: e.payload for e in replay_stream(system.store, UUID(show_id)).events}
    assert shown["Show.DetailsChanged"]["title"] == "Audited night"
    assert {"starts_at", "previous_starts_at", "sale_closes_at"} <= set(shown["Show.Rescheduled"])
    assert shown["Show.TierRepriced"]["price_cents"] == 5000
    assert "Show.Deleted" in {e.type for e in replay_stream(system.store, UUID(doomed)).events}

    report = verify(system.store, refund_grace=timedelta(minutes=15))

    assert report.violation_count == 0, report.violations
