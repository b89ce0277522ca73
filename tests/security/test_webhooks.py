"""Payments are believed only when they match (issue 12, finding 1), against the real servers:
the Stripe emulator (localstripe), and webhooks correctly signed with the data directory's
secret, as Stripe (or whoever learnt the secret) would sign them.

A booking is confirmed only by the intent recorded for it, read from Stripe's API (never from
the webhook's body), for its exact amount and currency, naming it. Other money is recorded as
mismatched and refunded; a payment after the show's cancellation or start is refunded."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
import stripe

from domain.booking import (
    CONFIRMED,
    OTHER_BOOKING,
    OTHER_INTENT,
    PAYMENT_REQUESTED,
    REFUNDED,
    WRONG_AMOUNT,
    WRONG_CURRENCY,
    Booking,
)
from domain.errors import IllegalTransitionError
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    SagaSystem,
    book,
    in_days,
    pay_with_stripe,
    refunds_of,
    show_starting,
    stripe_client,
    stripe_event_for,
    wait_until,
)
from tests.security.payment_support import (
    WEBHOOK,
    events_of,
    intent_event,
    kinds_of,
    metric,
    post_webhook,
)
from tests.unit.factories import a_booking, event_names, new_events, replay, state_of

pytestmark = pytest.mark.integration

PRICE = 4500  # show_starting's price, in EUR cents


def awaiting_payment(
    system: SagaSystem, show_id: str | None = None
) -> tuple[dict[str, str], Booking]:
    """A customer and their booking of one seat, its payment intent created, not paid."""
    api = system.api
    show_id = show_id or show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, quantity=1)
    booking = system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=10)
    return fan, booking


def pay(system: SagaSystem, fan: dict[str, str], booking: Booking) -> httpx.Response:
    return system.api.http.post(
        f"/bookings/{booking.id}/pay",
        json={"payment_method": VISA},
        headers={"Authorization": fan["Authorization"]},
    )


def intent_naming(
    client: stripe.StripeClient, booking: Booking, amount: int, currency: str
) -> stripe.PaymentIntent:
    """An intent anyone can create on the emulator, naming the booking in its metadata."""
    params: Any = {
        "amount": amount,
        "currency": currency,
        "payment_method_types": ["card"],
        "metadata": {"booking_id": str(booking.id)},
    }
    return client.v1.payment_intents.create(params=params)


def assert_untouched(system: SagaSystem, booking: Booking) -> None:
    """Still awaiting its payment: no event since the intent was recorded, seats still held."""
    assert kinds_of(system, booking.id) == ["Placed", "PaymentRequested"]
    claim = system.inventory(str(booking.show_id)).claim_of(booking.id)
    assert claim is not None and claim.sold is False


def assert_refunded_never_confirmed(
    system: SagaSystem, client: stripe.StripeClient, booking: Booking
) -> None:
    """A late payment for `booking`: recorded, refunded once in full, no seat kept."""
    refunded = system.wait_for_status(str(booking.id), {REFUNDED}, timeout=20)
    assert refunded.paid_cents == refunded.refunded_cents == PRICE
    kinds = kinds_of(system, booking.id)
    assert "LatePaymentReceived" in kinds and "Confirmed" not in kinds
    refunds = refunds_of(client, booking.payment_intent_id)
    assert [(r.id, r.amount) for r in refunds] == [(refunded.refund_id, PRICE)]
    assert system.inventory(str(booking.show_id)).claim_of(booking.id) is None


def assert_invalid_webhook(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/invalid-webhook")


def test_a_signed_webhook_of_any_amount_for_a_made_up_intent_confirms_nothing(
    payments_system: SagaSystem,
):
    system = payments_system
    fan, booking = awaiting_payment(system)
    ours = {"booking_id": str(booking.id)}

    for amount in (1, 0):
        forged = {
            "id": f"pi_forged{uuid4().hex}",
            "status": "succeeded",
            "amount": amount,
            "amount_received": amount,
            "currency": "eur",
            "metadata": ours,
        }
        r = post_webhook(system, intent_event("payment_intent.succeeded", forged))
        assert r.status_code == 200, r.text  # Stripe does not know the intent: nothing to do
    # The booking's own intent, said to be paid 1 cent: Stripe says it is not paid at all.
    own = {"id": booking.payment_intent_id, "status": "succeeded", "amount_received": 1}
    r = post_webhook(system, intent_event("payment_intent.succeeded", {**own, "metadata": ours}))
    assert r.status_code == 200, r.text

    assert_untouched(system, booking)
    assert system.booking(booking.id).paid_cents == 0
    # ... and it is still the customer's to pay, in full.
    r = pay(system, fan, booking)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == CONFIRMED
    assert system.booking(booking.id).paid_cents == PRICE


@pytest.mark.parametrize(("amount", "currency"), [(50, "eur"), (PRICE, "usd"), (PRICE, "eur")])
def test_an_intent_made_by_anyone_with_the_bookings_metadata_is_refunded_never_confirmed(
    payments_system: SagaSystem, amount: int, currency: str
):
    """Anyone can create an intent on the emulator naming our booking and pay it: 50 cents,
    the right figure in another currency, or even the exact price; none is the booking's."""
    system = payments_system
    fan, booking = awaiting_payment(system)
    client = stripe_client(system.endpoints)
    before = metric(system, 'ticketblitz_payment_mismatches_total{reason="other-intent"}')
    rogue = intent_naming(client, booking, amount, currency)
    pay_with_stripe(system.endpoints, rogue.id)
    # The emulator delivers its own webhook too; this is the same event, signed as Stripe does.
    r = post_webhook(system, stripe_event_for(client, "payment_intent.succeeded", rogue.id))
    assert r.status_code == 200, r.text

    def given_back() -> Booking | None:
        found = system.booking(booking.id)
        return found if rogue.id in found.mismatch_refund_ids else None

    after = wait_until(given_back, 20, f"the refund of {rogue.id}")

    assert after.status == PAYMENT_REQUESTED and after.paid_cents == 0
    kinds = kinds_of(system, booking.id)
    assert "PaymentSucceeded" not in kinds and "Confirmed" not in kinds
    mismatches = [
        e for e in events_of(system, booking.id) if type(e).__name__ == "PaymentMismatched"
    ]
    assert [(e.payment_intent_id, e.amount_cents, e.currency, e.reason) for e in mismatches] == [
        (rogue.id, amount, currency, "other-intent")
    ]
    refunds = refunds_of(client, rogue.id)
    assert [(r.id, r.amount) for r in refunds] == [(after.mismatch_refund_ids[rogue.id], amount)]
    assert metric(system, 'ticketblitz_payment_mismatches_total{reason="other-intent"}') > before
    # The booking's own payment still confirms it, and nothing was refunded twice.
    r = pay(system, fan, booking)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == CONFIRMED
    assert system.booking(booking.id).paid_cents == PRICE
    assert len(refunds_of(client, rogue.id)) == 1


def test_a_signed_payment_failure_naming_another_customers_booking_has_no_effect(
    payments_system: SagaSystem,
):
    system = payments_system
    victim, booking = awaiting_payment(system)
    names_victim = {"booking_id": str(booking.id)}
    client = stripe_client(system.endpoints)
    # An intent the attacker made with the victim's booking in its metadata, really declined.
    rogue = intent_naming(client, booking, PRICE, "eur")
    client.v1.payment_intents.update(rogue.id, params={"payment_method": DECLINED})
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.confirm(rogue.id)
    declined = {"last_payment_error": {"message": "Your card was declined."}}
    failures = [
        stripe_event_for(client, "payment_intent.payment_failed", rogue.id),
        intent_event(
            "payment_intent.payment_failed",
            {"id": f"pi_madeup{uuid4().hex}", "metadata": names_victim, **declined},
        ),
        # The victim's own intent, said to have failed: Stripe says it was not even tried.
        intent_event(
            "payment_intent.payment_failed",
            {"id": booking.payment_intent_id, "metadata": names_victim, **declined},
        ),
    ]

    for payload in failures:
        r = post_webhook(system, payload)
        assert r.status_code == 200, r.text

    assert_untouched(system, booking)
    r = pay(system, victim, booking)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == CONFIRMED


def test_an_amount_of_ten_to_the_thirty_is_refused_and_the_sales_read_model_keeps_up(
    payments_system: SagaSystem,
):
    system = payments_system
    api = system.api
    fan, booking = awaiting_payment(system)
    huge = {
        "id": booking.payment_intent_id,
        "status": "succeeded",
        "amount": 10**30,
        "amount_received": 10**30,
        "currency": "eur",
        "metadata": {"booking_id": str(booking.id)},
    }

    assert_invalid_webhook(post_webhook(system, intent_event("payment_intent.succeeded", huge)))

    assert_untouched(system, booking)
    r = pay(system, fan, booking)
    assert r.status_code == 200, r.text
    position = r.json()["position"]
    r = api.http.get(
        f"/shows/{booking.show_id}/stats", params={"after": position}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    stats = r.json()
    assert (stats["paid_cents"], stats["bookings_confirmed"]) == (PRICE, 1)


MALFORMED: dict[str, Callable[[Booking], dict[str, Any] | str]] = {
    "no data": lambda b: {"id": "evt_1", "object": "event", "type": "payment_intent.succeeded"},
    "object null": lambda b: {
        "id": "evt_1",
        "type": "payment_intent.succeeded",
        "data": {"object": None},
    },
    "amount abc": lambda b: _event(b, amount="abc"),
    "amount -5": lambda b: _event(b, amount=-5),
    "amount 10**30": lambda b: _event(b, amount_received=10**30),
    "amount true": lambda b: _event(b, amount=True),
    "amount 45.0": lambda b: _event(b, amount=45.0),
    "no event id": lambda b: {k: v for k, v in _event(b).items() if k != "id"},
    "no intent id": lambda b: _event(b, id=None),
    "300-char intent id": lambda b: _event(b, id="pi_" + "a" * 297),
    "300-char event id": lambda b: {**_event(b), "id": "evt_" + "a" * 296},
    "intent id not an intent's": lambda b: _event(b, id="../v1/charges"),
    "metadata a list": lambda b: _event(b, metadata=[str(b.id)]),
    "currency a number": lambda b: _event(b, currency=978),
    "not an object": lambda b: "[1, 2, 3]",
    "not JSON": lambda b: "{'id': 'evt_1'",
}


def _event(booking: Booking, **changes: Any) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "id": booking.payment_intent_id,
        "object": "payment_intent",
        "status": "succeeded",
        "amount": PRICE,
        "amount_received": PRICE,
        "currency": "eur",
        "metadata": {"booking_id": str(booking.id)},
    }
    intent.update(changes)
    intent = {k: v for k, v in intent.items() if v is not None}
    return {
        "id": f"evt_{uuid4().hex}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": intent},
    }


@pytest.fixture(scope="module")
def target(payments_system: SagaSystem) -> Booking:
    """One booking awaiting its payment, for the webhooks that must not touch it."""
    return awaiting_payment(payments_system)[1]


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_signed_webhook_is_a_400_and_changes_nothing(
    payments_system: SagaSystem, target: Booking, case: str
):
    body = MALFORMED[case](target)
    payload = (body if isinstance(body, str) else json.dumps(body)).encode()
    head = payments_system.store.head_position()

    assert_invalid_webhook(post_webhook(payments_system, payload))

    assert payments_system.store.head_position() == head
    assert_untouched(payments_system, target)


@pytest.mark.parametrize("offset", [3600, 400, -400, -3600])
def test_a_signature_timestamp_outside_the_tolerance_either_way_is_refused(
    payments_system: SagaSystem, target: Booking, offset: int
):
    payload = json.dumps(_event(target)).encode()

    assert_invalid_webhook(post_webhook(payments_system, payload, at=time.time() + offset))
    # The same event signed now is a good one (and changes nothing: the intent is not paid).
    assert post_webhook(payments_system, payload).status_code == 200
    assert_untouched(payments_system, target)


def test_a_100_mb_chunked_webhook_is_refused_before_it_is_read_whole(
    payments_system: SagaSystem,
):
    url = httpx.URL(payments_system.api.base_url)
    assert url.host and url.port
    total = 100 * 1024 * 1024
    chunk = b" " * (64 * 1024)
    pulled = 0

    def body() -> Any:  # the 100 MB, produced as they are sent
        nonlocal pulled
        while pulled < total:
            pulled += len(chunk)
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)

    head = (
        f"POST /api/v1{WEBHOOK} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        "Content-Type: application/json\r\nStripe-Signature: t=1,v1=00\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(head)
        for piece in body():
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n\r\n" not in answer:
            received = sock.recv(65536)
            assert received, f"connection closed without an answer: {answer!r}"
            answer += received

    print(f"the server answered after {pulled} of {total} bytes")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert pulled < total // 4


def test_a_payment_after_the_shows_cancellation_is_refunded_never_confirmed(
    payments_system: SagaSystem,
):
    system = payments_system
    api = system.api
    _, booking = awaiting_payment(system)
    r = api.http.post(f"/shows/{booking.show_id}/cancel", headers=api.admin())
    assert r.status_code == 200, r.text

    # The customer's browser pays with Stripe after the cancellation; Stripe's webhook tells us.
    client = pay_with_stripe(system.endpoints, booking.payment_intent_id)

    assert_refunded_never_confirmed(system, client, booking)


def test_a_payment_after_the_show_started_is_refunded_never_confirmed(
    payments_system: SagaSystem,
):
    system = payments_system
    api = system.api
    starts = datetime.now(UTC) + timedelta(seconds=8)
    fan, booking = awaiting_payment(system, show_starting(api, starts))
    wait_until(lambda: datetime.now(UTC) > starts, 30, "the show to start")

    r = pay(system, fan, booking)  # nothing is charged that could only be refunded
    assert r.status_code == 409, r.text
    client = stripe_client(system.endpoints)
    assert client.v1.payment_intents.retrieve(str(booking.payment_intent_id)).status != "succeeded"
    # Paid with Stripe directly all the same: the money is given back.
    pay_with_stripe(system.endpoints, booking.payment_intent_id)

    assert_refunded_never_confirmed(system, client, booking)


# --- the rule itself, in the pure domain (no servers) ---


def test_only_the_recorded_intent_naming_the_booking_for_its_amount_and_currency_pays():
    booking = a_booking(PRICE)
    intent = "pi_own"
    assert booking.payment_mismatch(intent, PRICE, "eur", booking.id) == OTHER_INTENT  # none yet
    booking.request_payment(intent)

    assert booking.payment_mismatch(intent, PRICE, "eur", booking.id) is None
    assert booking.payment_mismatch("pi_else", PRICE, "eur", booking.id) == OTHER_INTENT
    assert booking.payment_mismatch(intent, PRICE, "eur", uuid4()) == OTHER_BOOKING
    assert booking.payment_mismatch(intent, 50, "eur", booking.id) == WRONG_AMOUNT
    assert booking.payment_mismatch(intent, PRICE + 1, "eur", booking.id) == WRONG_AMOUNT
    assert booking.payment_mismatch(intent, PRICE, "usd", booking.id) == WRONG_CURRENCY


def test_a_mismatched_payment_is_recorded_once_never_confirms_and_is_refunded_once():
    booking = a_booking(PRICE)
    booking.request_payment("pi_own")

    booking.record_mismatched_payment("pi_rogue", 50, "eur", OTHER_INTENT)

    assert booking.status == PAYMENT_REQUESTED and booking.paid_cents == 0
    assert booking.mismatch_refunds_due == {"pi_rogue": 50}
    with pytest.raises(IllegalTransitionError):
        booking.record_mismatched_payment("pi_rogue", 50, "eur", OTHER_INTENT)
    with pytest.raises(IllegalTransitionError):
        booking.refund_mismatched_payment("pi_rogue", "re_1", 49)  # not what was captured
    booking.refund_mismatched_payment("pi_rogue", "re_1", 50)
    assert booking.mismatch_refunds_due == {}
    with pytest.raises(IllegalTransitionError):
        booking.refund_mismatched_payment("pi_rogue", "re_2", 50)
    events = new_events(booking)
    assert event_names(events)[-2:] == ["PaymentMismatched", "MismatchedPaymentRefunded"]
    assert state_of(replay(events)) == state_of(booking)
