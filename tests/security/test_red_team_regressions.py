"""Regressions for the red team's findings, against the real servers: payments racing a show's
cancellation (the log's order and the customer's answer), show times no one means, invisible
characters in names, and the Stripe emulator answering an updated amount as a string."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from audit.verify import VerifyReport, verify
from domain.booking import (
    CANCELLED,
    CONFIRMED,
    PAYMENT_REQUESTED,
    REFUNDED,
    WRONG_AMOUNT,
    Booking,
)
from domain.show import Show
from http_shell.container import Container
from infra.event_store import EVENTS_TABLE, PostgresEventStore
from tests.e2e.conftest import Api
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    in_days,
    intents_of,
    new_database,
    pay_with_stripe,
    refunds_of,
    show_starting,
    stripe_client,
    wait_until,
)
from tests.security.payment_support import events_of, kinds_of
from tests.unit.factories import a_booking, a_show
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

PRICE = 4500  # show_starting's price, in EUR cents
RACING_PAYMENTS = 16


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    kind: str = response.json()["type"]
    return kind


def described(report: VerifyReport) -> str:
    return "\n".join(str(v) for v in [*report.violations, *report.pending])


# --- 1. payments racing the show's cancellation ---------------------------------------------


def settled(system: SagaSystem, booking_id: str) -> Booking | None:
    """The booking once it ended unsold and whatever was paid for it was given back."""
    booking = system.booking(booking_id)
    done = booking.status in (CANCELLED, REFUNDED) and booking.paid_cents == booking.refunded_cents
    return booking if done else None


def wait_for_settled(system: SagaSystem, booking_id: str) -> Booking:
    return wait_until(lambda: settled(system, booking_id), 60, f"{booking_id} to be settled")


@pytest.mark.parametrize("race", range(3))  # each race catches the old order about half the time
def test_payments_racing_the_shows_cancellation_are_logged_in_the_order_they_were_decided(
    payments_system: SagaSystem, race: int
):
    """Given many bookings awaiting payment on one show;
    when their customers pay all at once and the admin cancels the show meanwhile;
    then each customer is told either confirmed or 409 (not charged, or charged and refunded),
    every booking ends unsold with every charge refunded exactly once, and `audit verify`
    finds no booking confirmed after the show's cancellation."""
    system = payments_system
    api = system.api
    show_id = show_starting(api, in_days(30), seats=RACING_PAYMENTS)
    fans = [api.new_customer() for _ in range(RACING_PAYMENTS)]
    held = [book(api, fan, show_id, quantity=1)["booking_id"] for fan in fans]
    for booking_id in held:
        system.wait_for_status(booking_id, {PAYMENT_REQUESTED}, timeout=30)
    first_answer = threading.Event()
    start = threading.Barrier(RACING_PAYMENTS + 1)

    def pay(booking_id: str, fan: dict[str, str]) -> httpx.Response:
        with httpx.Client(base_url=api.base_url, timeout=60) as http:
            start.wait(timeout=30)
            try:
                return http.post(
                    f"/bookings/{booking_id}/pay",
                    json={"payment_method": VISA},
                    headers={"Authorization": fan["Authorization"]},
                )
            finally:
                first_answer.set()

    with ThreadPoolExecutor(max_workers=RACING_PAYMENTS) as pool:
        paying = [pool.submit(pay, b, fan) for b, fan in zip(held, fans, strict=True)]
        start.wait(timeout=30)
        # Shortly after the payments started: some decided before, some after, some in flight.
        assert first_answer.wait(timeout=60), "no payment was answered within 60 s"
        cancelled = api.http.post(f"/shows/{show_id}/cancel", headers=api.admin())
        answers = [f.result(timeout=120) for f in paying]

    assert cancelled.status_code == 200, cancelled.text
    for booking_id, answer in zip(held, answers, strict=True):
        if answer.status_code == 200:
            assert answer.json()["status"] == CONFIRMED, (booking_id, answer.text)
        else:
            assert answer.status_code == 409, (booking_id, answer.text)
            assert problem_type(answer).endswith(("/illegal-transition", "/payment-refunded"))
    ended = {b: wait_for_settled(system, b) for b in held}
    assert all(b.status in (CANCELLED, REFUNDED) for b in ended.values())
    client = stripe_client(system.endpoints)
    for booking_id, intents in intents_of(client, held).items():
        for intent in intents:
            refunds = refunds_of(client, intent.id)
            if intent.status == "succeeded":  # charged: refunded once, in full
                assert [r.amount for r in refunds] == [PRICE], (booking_id, intent.id)
            else:
                assert refunds == [], (booking_id, intent.id)
        charged = sum(PRICE for i in intents if i.status == "succeeded")
        assert ended[booking_id].refunded_cents == charged, booking_id
    # A 409 `illegal-transition` charged nothing; a 200 or `payment-refunded` charged once.
    for booking_id, answer in zip(held, answers, strict=True):
        not_charged = answer.status_code == 409 and problem_type(answer).endswith(
            "/illegal-transition"
        )
        assert (ended[booking_id].paid_cents == 0) == not_charged, (booking_id, answer.text)

    report = verify(system.store, refund_grace=timedelta(minutes=15))

    assert report.violation_count == 0, described(report)


@pytest.fixture(scope="module")
def own_store(endpoints: StackEndpoints) -> Iterator[PostgresEventStore]:
    """An event store on a fresh database of the session's PostgreSQL."""
    assert endpoints.database_url is not None
    store = PostgresEventStore(new_database(endpoints.database_url), pool_size=1)
    yield store
    store.close()


def logged(store: PostgresEventStore, *aggregate_ids: UUID) -> list[tuple[UUID, str]]:
    """The aggregates' events in the log's order: (aggregate id, event class name)."""
    with store.connection() as conn:
        rows = conn.execute(
            f"SELECT originator_id, topic FROM {EVENTS_TABLE} "
            "WHERE originator_id = ANY(%s) ORDER BY notification_id",
            (list(aggregate_ids),),
        ).fetchall()
    return [(UUID(str(row[0])), str(row[1]).rsplit(".", 1)[-1]) for row in rows]


def test_one_save_of_several_aggregates_logs_their_events_in_the_order_they_were_decided(
    own_store: PostgresEventStore,
):
    """Given a paid booking and its show on sale, saved;
    when the booking is confirmed, then the show cancelled, and both are saved together with
    the show first (as the show's writer may hand them over);
    then the log has the confirmation before the cancellation."""
    show = a_show()
    booking = a_booking()
    booking.request_payment("pi_race")
    booking.record_payment("pi_race", booking.amount_cents)
    own_store.save(show, booking)

    show.open_sale()
    booking.confirm()
    show.cancel("the venue flooded")
    own_store.save(show, booking)

    last_three = logged(own_store, show.id, booking.id)[-3:]
    assert last_three == [
        (show.id, "SaleOpened"),
        (booking.id, "Confirmed"),
        (show.id, "Cancelled"),
    ]
    assert own_store.get(show.id, Show).version == show.version
    assert own_store.get(booking.id, Booking).status == CONFIRMED


# --- 2. show times no one means ---------------------------------------------------------------


def show_body(starts_at: Any, **changes: Any) -> dict[str, Any]:
    return {
        "title": f"Far future {uuid4().hex[:6]}",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": starts_at,
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [{"code": "GA", "kind": "general", "tier": "STD", "capacity": 10}],
        **changes,
    }


def ahead(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    "starts_at",
    [
        "9999-12-31T23:59:59-14:00",
        pytest.param(ahead(3660), id="eleven-years-ahead"),
        1893456000,
        1893456000.0,
        True,
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_a_show_time_no_one_means_is_422_and_nothing_is_written(
    api: Api, container: Container, starts_at: Any
):
    before = container.store.head_position()

    r = api.http.post("/shows", json=show_body(starts_at), headers=api.admin())

    assert r.status_code == 422, r.text
    assert problem_type(r).endswith(("/validation-error", "/invalid-show"))
    assert container.store.head_position() == before


def test_a_show_nine_years_ahead_is_scheduled(api: Api):
    r = api.http.post("/shows", json=show_body(ahead(9 * 365)), headers=api.admin())
    assert r.status_code == 201, r.text


# --- 3. invisible characters --------------------------------------------------------------------

INVISIBLES = {
    "zero-width-space": "\u200b",
    "byte-order-mark": "\ufeff",
    "word-joiner": "\u2060",
    "tag": "\U000e0001",
}


@pytest.mark.parametrize("field", ["title", "venue", "category"])
@pytest.mark.parametrize("invisible", INVISIBLES.values(), ids=INVISIBLES.keys())
def test_a_show_with_an_invisible_character_is_422_and_nothing_is_written(
    api: Api, container: Container, field: str, invisible: str
):
    before = container.store.head_position()
    body = show_body(ahead(30))
    body[field] = f"Blue{invisible}Hall"

    r = api.http.post("/shows", json=body, headers=api.admin())

    assert r.status_code == 422, r.text
    assert problem_type(r).endswith("/validation-error")
    assert container.store.head_position() == before


@pytest.mark.parametrize("invisible", INVISIBLES.values(), ids=INVISIBLES.keys())
def test_a_customer_name_with_an_invisible_character_is_422(api: Api, invisible: str):
    body = {
        "email": f"fan-{uuid4().hex[:12]}@example.com",
        "password": "correct horse battery",
        "name": f"Ad{invisible}min",
    }

    r = api.http.post("/auth/register", json=body)

    assert r.status_code == 422, r.text
    assert problem_type(r).endswith("/validation-error")
    login = {"email": body["email"], "password": body["password"]}
    assert api.http.post("/auth/token", json=login).status_code != 200  # no account made


def test_a_title_with_a_zero_width_joiner_in_an_emoji_sequence_is_accepted(
    api: Api, container: Container
):
    title = f"Coders' night \U0001f469\u200d\U0001f4bb {uuid4().hex[:6]}"

    r = api.http.post("/shows", json=show_body(ahead(30), title=title), headers=api.admin())

    assert r.status_code == 201, r.text
    assert container.store.get(UUID(r.json()["show_id"]), Show).title == title


# --- 4. the emulator's amount as a string -------------------------------------------------------


def booking_whose_intent_is_cut_to_50_cents(
    system: SagaSystem,
) -> tuple[dict[str, str], Booking, str]:
    """A fan's booking awaiting payment, whose own intent the emulator was told to make 50
    cents (it then answers the amount as the string "50")."""
    fan = system.api.new_customer()
    held = book(system.api, fan, show_starting(system.api, in_days(30)), quantity=1)
    booking = system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=15)
    intent_id = booking.payment_intent_id
    assert intent_id is not None
    stripe_client(system.endpoints).v1.payment_intents.update(intent_id, params={"amount": 50})
    return fan, booking, intent_id


def refunded_mismatch(system: SagaSystem, booking: Booking, intent_id: str) -> Booking:
    """The booking once the mismatched money on `intent_id` was given back."""

    def given_back() -> Booking | None:
        found = system.booking(booking.id)
        return found if intent_id in found.mismatch_refund_ids else None

    return wait_until(given_back, 30, f"the refund of {intent_id}")


def test_the_bookings_own_intent_updated_to_50_cents_is_a_refunded_mismatch(
    payments_system: SagaSystem,
):
    """Given a booking's own payment intent, updated on the emulator to 50 cents (which it then
    answers as the string "50");
    when the customer pays for the booking;
    then the payment is read (no 503), recorded as a wrong amount, the customer told 409
    `payment-refunded`, the booking never confirms, and its 50 cents are refunded once."""
    system = payments_system
    fan, booking, intent_id = booking_whose_intent_is_cut_to_50_cents(system)
    api, client = system.api, stripe_client(system.endpoints)

    paid = api.http.post(
        f"/bookings/{booking.id}/pay",
        json={"payment_method": VISA},
        headers={"Authorization": fan["Authorization"]},
    )

    assert paid.status_code == 409, paid.text
    assert problem_type(paid).endswith("/payment-refunded")
    assert paid.json()["booking_status"] == CANCELLED

    after = refunded_mismatch(system, booking, intent_id)
    assert after.status == CANCELLED and after.paid_cents == 0
    assert "Confirmed" not in kinds_of(system, booking.id)
    mismatches = [
        (e.payment_intent_id, e.amount_cents, e.currency, e.reason)
        for e in events_of(system, booking.id)
        if type(e).__name__ == "PaymentMismatched"
    ]
    assert mismatches == [(intent_id, 50, "eur", WRONG_AMOUNT)]
    refunds = refunds_of(client, intent_id)
    assert [(r.id, r.amount) for r in refunds] == [(after.mismatch_refund_ids[intent_id], 50)]


def test_the_bookings_own_intent_updated_to_50_cents_and_paid_at_stripe_is_refunded(
    payments_system: SagaSystem,
):
    """Given a booking's own payment intent, updated on the emulator to 50 cents;
    when it is paid at Stripe directly, as a browser would (the emulator's webhook then carries
    the amount as the string "50");
    then the webhook is read, the payment recorded as a wrong amount, never confirmed, and its
    50 cents refunded once."""
    system = payments_system
    _, booking, intent_id = booking_whose_intent_is_cut_to_50_cents(system)

    client = pay_with_stripe(system.endpoints, intent_id)

    after = refunded_mismatch(system, booking, intent_id)
    assert after.status == CANCELLED and after.paid_cents == 0
    assert "Confirmed" not in kinds_of(system, booking.id)
    refunds = refunds_of(client, intent_id)
    assert [(r.id, r.amount) for r in refunds] == [(after.mismatch_refund_ids[intent_id], 50)]
