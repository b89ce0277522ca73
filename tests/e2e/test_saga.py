"""The booking saga over HTTP, with the real embedded servers: Stripe (localstripe), Kafka
(Tansu), SMTP (aiosmtpd) and the workers running as they do under `ticketblitz workers`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.booking import CANCELLED, CONFIRMED, EXPIRED, HELD, PAYMENT_REQUESTED, REFUNDED
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    WEBHOOK_PATH,
    SagaSystem,
    book,
    in_days,
    intents_of,
    pay_with_stripe,
    refunds_of,
    running_system,
    show_starting,
    signed,
    stripe_client,
    stripe_event_for,
    topic_events,
    wait_until,
)
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "saga") as started:
        yield started


def mails_to(mailbox: Mailbox, address: str) -> list:
    return [m for m in mailbox.messages() if m["To"] == address]


def test_a_paid_booking_is_confirmed_with_one_charge_one_email_and_its_events_on_kafka(
    system: SagaSystem, mailbox: Mailbox
):
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()

    started = time.monotonic()
    held = book(api, fan, show_id, seats=["A-1-1", "A-1-2"], payment_method=VISA)
    booking = system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=5)
    print(f"confirmed {time.monotonic() - started:.2f} s after the booking request")

    assert booking.paid_cents == held["amount_cents"] == 9000
    claim = system.inventory(show_id).claim_of(booking.id)
    assert claim is not None and claim.sold is True
    intents = intents_of(stripe_client(system.endpoints), [held["booking_id"]])[held["booking_id"]]
    assert [(i.id, i.status, i.amount) for i in intents] == [
        (booking.payment_intent_id, "succeeded", 9000)
    ]
    mail = mailbox.wait_for(lambda m: m["To"] == fan["email"], timeout=15)
    print(f"e-mail received {time.monotonic() - started:.2f} s after the booking request")
    assert "confirmed" in mail["Subject"]
    body = mail.get_body(("plain",))  # the text (the tickets are attached)
    assert body is not None
    text = body.get_content()
    assert "A-1-1" in text and "A-1-2" in text and "90.00 EUR" in text
    assert len(mails_to(mailbox, fan["email"])) == 1  # the booking's last event: nothing follows
    published = [
        e.type
        for e in topic_events(system.endpoints.kafka_bootstrap, system.bookings_topic)
        if str(e.booking_id) == held["booking_id"]
    ]
    assert published == [
        "booking.placed",
        "booking.payment_requested",
        "booking.paid",
        "booking.confirmed",
    ]


def test_a_declined_card_cancels_the_booking_and_frees_its_seats(
    system: SagaSystem, mailbox: Mailbox
):
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-1"], payment_method=DECLINED)

    booking = system.wait_for_status(held["booking_id"], {CANCELLED}, timeout=5)

    assert booking.reason == "Your card was declined."
    assert system.inventory(show_id).claim_of(booking.id) is None
    book(api, api.new_customer(), show_id, seats=["A-1-1"])  # the seat is free again
    mail = mailbox.wait_for(lambda m: m["To"] == fan["email"], timeout=15)
    assert "declined" in mail["Subject"].lower()


def test_paying_a_held_booking_confirms_it(system: SagaSystem):
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, quantity=1)

    r = api.http.post(
        f"/bookings/{held['booking_id']}/pay",
        json={"payment_method": VISA},
        headers={"Authorization": fan["Authorization"]},
    )

    assert r.status_code == 200, r.text
    assert r.json()["status"] == CONFIRMED
    assert system.booking(held["booking_id"]).paid_cents == 4500


def test_paying_with_a_declined_card_answers_402_and_cancels(system: SagaSystem):
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-5"])

    r = api.http.post(
        f"/bookings/{held['booking_id']}/pay",
        json={"payment_method": DECLINED},
        headers={"Authorization": fan["Authorization"]},
    )

    assert r.status_code == 402, r.text
    assert r.json()["type"].endswith("/payment-declined")
    assert r.json()["reason"] == "Your card was declined."
    assert system.booking(held["booking_id"]).status == CANCELLED
    assert system.inventory(show_id).claim_of(system.booking(held["booking_id"]).id) is None


def test_a_payment_method_stripe_does_not_know_is_a_422_and_the_booking_can_still_be_paid(
    system: SagaSystem,
):
    """A newcomer tries real Stripe's `pm_card_chargeDeclined` (the emulator does not have it):
    nothing is charged, the hold is not lost, and a known method pays it."""
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    auth = {"Authorization": fan["Authorization"]}
    held = book(api, fan, show_id, seats=["A-1-7"])
    pay = f"/bookings/{held['booking_id']}/pay"

    unknown = api.http.post(pay, json={"payment_method": "pm_card_chargeDeclined"}, headers=auth)

    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["type"].endswith("/unknown-payment-method")
    assert unknown.json()["payment_method"] == "pm_card_chargeDeclined"
    booking = system.booking(held["booking_id"])
    assert booking.status in {HELD, PAYMENT_REQUESTED} and booking.paid_cents == 0
    assert system.inventory(show_id).lapses == {}  # no lapsed hold counted against the fan
    paid = api.http.post(pay, json={"payment_method": VISA}, headers=auth)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == CONFIRMED


def test_a_booking_made_with_an_unknown_payment_method_waits_for_its_customer(
    system: SagaSystem, caplog: pytest.LogCaptureFixture
):
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    with caplog.at_level(logging.WARNING, logger="process_managers.payment_saga"):
        held = book(api, fan, show_id, seats=["A-1-8"], payment_method="pm_card_chargeDeclined")
        wait_until(
            lambda: any(held["booking_id"] in r.getMessage() for r in caplog.records),
            30,
            "the saga to try the charge and leave the booking to its customer",
        )
    booking = system.booking(held["booking_id"])
    assert booking.status == PAYMENT_REQUESTED and booking.paid_cents == 0
    paid = api.http.post(
        f"/bookings/{held['booking_id']}/pay",
        json={"payment_method": VISA},
        headers={"Authorization": fan["Authorization"]},
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == CONFIRMED


def test_someone_else_cannot_pay_for_a_booking(system: SagaSystem):
    api = system.api
    show_id = show_starting(api, in_days(30))
    held = book(api, api.new_customer(), show_id, quantity=1)
    other = api.new_customer()
    r = api.http.post(
        f"/bookings/{held['booking_id']}/pay",
        json={"payment_method": VISA},
        headers={"Authorization": other["Authorization"]},
    )
    assert r.status_code == 403, r.text
    # ...and nothing was charged: the booking is unpaid, its seat unsold, no intent succeeded
    booking = system.booking(held["booking_id"])
    assert booking.status in {HELD, PAYMENT_REQUESTED} and booking.paid_cents == 0
    claim = system.inventory(show_id).claim_of(booking.id)
    assert claim is not None and claim.sold is False
    intents = intents_of(stripe_client(system.endpoints), [held["booking_id"]])[held["booking_id"]]
    assert [i.status for i in intents if i.status == "succeeded"] == []
    assert sum(i.to_dict().get("amount_received") or 0 for i in intents) == 0


def test_an_unpaid_hold_expires_and_frees_its_seats(system: SagaSystem, mailbox: Mailbox):
    api = system.short_hold_api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-1", "A-1-2"])
    expires_at = datetime.fromisoformat(held["hold_expires_at"])

    booking = system.wait_for_status(held["booking_id"], {EXPIRED}, timeout=15)

    print(f"expired {(datetime.now(UTC) - expires_at).total_seconds():.2f} s after its expiry")
    assert system.inventory(show_id).claim_of(booking.id) is None
    book(api, api.new_customer(), show_id, seats=["A-1-1", "A-1-2"])
    mail = mailbox.wait_for(lambda m: m["To"] == fan["email"], timeout=15)
    assert "expired" in mail["Subject"]


def test_a_payment_after_expiry_is_refunded_not_confirmed(system: SagaSystem, mailbox: Mailbox):
    api = system.short_hold_api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-3"])
    booking = system.wait_for_status(held["booking_id"], {EXPIRED}, timeout=15)
    assert booking.payment_intent_id is not None

    # The customer's browser completes the payment with Stripe directly, too late; Stripe's
    # webhook tells us.
    client = pay_with_stripe(system.endpoints, booking.payment_intent_id)

    refunded = system.wait_for_status(held["booking_id"], {REFUNDED}, timeout=15)
    assert refunded.paid_cents == refunded.refunded_cents == 4500
    refunds = refunds_of(client, booking.payment_intent_id)
    assert [(r.id, r.amount) for r in refunds] == [(refunded.refund_id, 4500)]
    assert system.inventory(show_id).claim_of(booking.id) is None
    mailbox.wait_for(
        lambda m: m["To"] == fan["email"] and m["Subject"].startswith("Refund"), timeout=15
    )


def test_the_same_webhook_twice_has_one_effect(system: SagaSystem):
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-4"])
    booking = system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=5)
    client = pay_with_stripe(system.endpoints, booking.payment_intent_id)
    payload = stripe_event_for(client, "payment_intent.succeeded", booking.payment_intent_id)

    for _ in range(2):
        r = api.http.post(
            WEBHOOK_PATH.removeprefix("/api/v1"),
            content=payload,
            headers={"Stripe-Signature": signed(payload), "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text

    confirmed = system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=5)
    assert confirmed.paid_cents == 4500
    kinds = [type(e).__name__ for e in system.store.app.events.get(confirmed.id)]
    assert kinds.count("PaymentSucceeded") == 1 and kinds.count("Confirmed") == 1


def test_an_unsigned_or_badly_signed_webhook_is_rejected_and_changes_nothing(system: SagaSystem):
    api = system.api
    show_id = show_starting(api, in_days(30))
    held = book(api, api.new_customer(), show_id, seats=["A-1-6"])
    booking = system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=5)
    event = {
        "id": "evt_forged",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": booking.payment_intent_id,
                "object": "payment_intent",
                "status": "succeeded",
                "amount": 4500,
                "metadata": {"booking_id": str(booking.id)},
            }
        },
    }
    payload = json.dumps(event).encode()
    path = WEBHOOK_PATH.removeprefix("/api/v1")
    for headers in (
        {},
        {"Stripe-Signature": signed(payload, secret="whsec_not_ours")},
        {"Stripe-Signature": "t=1,v1=00"},
    ):
        r = api.http.post(path, content=payload, headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["type"].endswith("/invalid-webhook")
    assert system.booking(held["booking_id"]).status == PAYMENT_REQUESTED


def test_cancelling_a_confirmed_booking_refunds_it_and_tells_the_customer(
    system: SagaSystem, mailbox: Mailbox
):
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-7", "A-1-8"], payment_method=VISA)
    booking = system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=5)

    r = api.http.post(
        f"/bookings/{held['booking_id']}/cancel", headers={"Authorization": fan["Authorization"]}
    )
    assert r.status_code == 202, r.text

    refunded = system.wait_for_status(held["booking_id"], {REFUNDED}, timeout=10)
    assert refunded.refunded_cents == 9000
    client = stripe_client(system.endpoints)
    assert [r.amount for r in refunds_of(client, booking.payment_intent_id)] == [9000]
    assert system.inventory(show_id).claim_of(booking.id) is None
    mailbox.wait_for(
        lambda m: m["To"] == fan["email"] and m["Subject"].startswith("Refund"), timeout=15
    )
    subjects = sorted(m["Subject"].split()[0] for m in mails_to(mailbox, fan["email"]))
    assert subjects == ["Refund", "Your", "Your"]  # confirmed, cancelled, refund issued


def test_a_paid_booking_cannot_be_cancelled_once_the_show_started(system: SagaSystem):
    """By its customer (an admin still can: tests/security/test_started_shows.py)."""
    api = system.api
    starts_at = datetime.now(UTC) + timedelta(seconds=10)  # shows start in the future
    show_id = show_starting(api, starts_at)
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-1"], payment_method=VISA)
    system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=5)
    wait_until(lambda: datetime.now(UTC) > starts_at, 30, "the show's start")

    r = api.http.post(
        f"/bookings/{held['booking_id']}/cancel", headers={"Authorization": fan["Authorization"]}
    )

    assert r.status_code == 409, r.text
    assert system.booking(held["booking_id"]).status == CONFIRMED


def test_stripe_webhooks_reach_the_app_and_settle_a_payment_made_with_stripe(
    system: SagaSystem,
):
    """Nothing but the emulator's own webhook tells us about this payment."""
    api = system.api
    show_id = show_starting(api, in_days(30))
    held = book(api, api.new_customer(), show_id, seats=["A-1-9"])
    booking = system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=5)
    pay_with_stripe(system.endpoints, booking.payment_intent_id)

    system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=10)
