"""Cancelling a show, over HTTP with the real servers and the workers: every paid booking is
refunded in full, every held one released, each affected customer e-mailed once about it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from domain.booking import CANCELLED, CONFIRMED, PAYMENT_REQUESTED, REFUNDED
from domain.show import Show
from infra.log_follower import positions_of
from process_managers.show_cancellation import SHOW_CANCELLED
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    SagaSystem,
    book,
    in_days,
    intents_of,
    pay_with_stripe,
    refunds_of,
    running_system,
    show_starting,
    stripe_client,
    topic_events,
    wait_until,
)
from tests.faults.support import group_lag
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    # The read models' runners too: the seat map.
    with running_system(endpoints, stack_dir / "show-cancellation", read_models=True) as started:
        yield started


def notifier_done(system: SagaSystem) -> None:
    """Until the relay published every event and the notifier committed every record: from
    then on, no e-mail about what happened so far is still to come."""
    assert system.endpoints.kafka_bootstrap is not None
    bootstrap, group = system.endpoints.kafka_bootstrap, system.settings.kafka_notifier_group

    def done() -> bool:
        head = system.store.head_position()
        with system.store.connection() as conn:
            relayed = positions_of(conn).get("kafka-relay", (0, None))[0]
        return relayed >= head and group_lag(bootstrap, group, system.bookings_topic) == 0

    wait_until(done, 30, "the notifier to handle every event")


def mails_to(mailbox: Mailbox, address: str) -> list[EmailMessage]:
    return [m for m in mailbox.messages() if m["To"] == address]


def cancel_show(system: SagaSystem, show_id: str) -> int:
    api = system.api
    r = api.http.post(
        f"/shows/{show_id}/cancel", json={"reason": "the band fell ill"}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    position: int = r.json()["position"]
    return position


def test_cancelling_a_show_refunds_the_paid_releases_the_held_and_tells_each_customer_once(
    system: SagaSystem, mailbox: Mailbox
):
    api = system.api
    show_id = show_starting(api, in_days(30))
    paid_fan, held_fan, declined_fan = api.new_customer(), api.new_customer(), api.new_customer()
    paid = book(api, paid_fan, show_id, seats=["A-1-1", "A-1-2"], payment_method=VISA)
    held = book(api, held_fan, show_id, seats=["A-1-3"])
    declined = book(api, declined_fan, show_id, seats=["A-1-4"], payment_method=DECLINED)
    paid_booking = system.wait_for_status(paid["booking_id"], {CONFIRMED}, timeout=10)
    held_booking = system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=10)
    system.wait_for_status(declined["booking_id"], {CANCELLED}, timeout=10)
    notifier_done(system)  # the e-mails of before the cancellation are all out
    before = {fan["email"]: len(mails_to(mailbox, fan["email"])) for fan in (paid_fan, held_fan)}
    declined_before = len(mails_to(mailbox, declined_fan["email"]))

    cancel_show(system, show_id)

    refunded = system.wait_for_status(paid["booking_id"], {REFUNDED}, timeout=20)
    assert (refunded.refunded_cents, refunded.reason) == (9000, SHOW_CANCELLED)
    released = system.wait_for_status(held["booking_id"], {CANCELLED}, timeout=20)
    assert released.reason == SHOW_CANCELLED
    assert system.booking(declined["booking_id"]).reason != SHOW_CANCELLED  # over before

    client = stripe_client(system.endpoints)
    assert [r.amount for r in refunds_of(client, paid_booking.payment_intent_id)] == [9000]
    held_intents = intents_of(client, [held["booking_id"]])[held["booking_id"]]
    assert [i.id for i in held_intents] == [held_booking.payment_intent_id]
    assert held_intents[0].status != "succeeded"  # nothing charged, so nothing to refund

    assert not system.inventory(show_id).claims  # every seat of the show is free again
    position = system.store.head_position()
    r = api.http.get(f"/shows/{show_id}/seats", params={"after": position})
    assert r.status_code == 200, r.text
    statuses = {s["seat"]: s["status"] for s in r.json()["sections"][0]["rows"][0]["seats"]}
    assert set(statuses.values()) == {"free"}, statuses

    # Each affected customer: one e-mail, about the show's cancellation (the paid one's says
    # the money comes back; its refund sends no second one). The declined one hears nothing.
    notifier_done(system)
    title = system.store.get(refunded.show_id, Show).title
    bodies = {}
    for fan, booking_id in ((paid_fan, paid["booking_id"]), (held_fan, held["booking_id"])):
        new = mails_to(mailbox, fan["email"])[before[fan["email"]] :]
        assert [m["Subject"] for m in new] == [f"Cancelled: {title} will not take place"]
        assert new[0]["X-TicketBlitz-Booking-Id"] == booking_id
        bodies[booking_id] = new[0].get_content()
    assert "refunding what you paid, 90.00 EUR, in full" in bodies[paid["booking_id"]]
    assert "A-1-1" in bodies[paid["booking_id"]] and "A-1-2" in bodies[paid["booking_id"]]
    assert "You were not charged" in bodies[held["booking_id"]]
    assert "A-1-3" in bodies[held["booking_id"]]
    assert len(mails_to(mailbox, declined_fan["email"])) == declined_before

    cancelled_events = [
        e
        for e in topic_events(system.endpoints.kafka_bootstrap, system.bookings_topic)
        if e.show_id == refunded.show_id and e.type == "booking.cancelled"
    ]
    assert {str(e.booking_id) for e in cancelled_events} == {paid["booking_id"], held["booking_id"]}
    for event in cancelled_events:
        assert event.payload["show_cancelled"] is True
        assert event.payload["reason"] == SHOW_CANCELLED


def test_a_payment_made_before_the_cancellation_is_refunded_also_after_the_show_started(
    system: SagaSystem,
):
    """An admin cancels a show once it has started: its paid bookings are refunded all the
    same (the customer's own cancellation is refused by then)."""
    api = system.api
    starts_at = datetime.now(UTC) + timedelta(seconds=15)
    show_id = show_starting(api, starts_at)
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-5"], payment_method=VISA)
    booking = system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=10)
    wait_until(lambda: datetime.now(UTC) > starts_at, 30, "the show to start")

    cancel_show(system, show_id)

    refunded = system.wait_for_status(held["booking_id"], {REFUNDED}, timeout=20)
    assert refunded.refunded_cents == booking.amount_cents == 4500
    client = stripe_client(system.endpoints)
    assert [r.amount for r in refunds_of(client, booking.payment_intent_id)] == [4500]
    assert system.inventory(show_id).claim_of(booking.id) is None


def test_cancelling_a_show_twice_is_refused_and_refunds_nothing_twice(system: SagaSystem):
    api = system.api
    show_id = show_starting(api, in_days(30))
    held = book(api, api.new_customer(), show_id, seats=["A-1-6"], payment_method=VISA)
    booking = system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=10)
    cancel_show(system, show_id)

    r = api.http.post(f"/shows/{show_id}/cancel", headers=api.admin())

    assert r.status_code == 409, r.text
    system.wait_for_status(held["booking_id"], {REFUNDED}, timeout=20)
    client = stripe_client(system.endpoints)
    assert [r.amount for r in refunds_of(client, booking.payment_intent_id)] == [4500]


def test_money_paid_after_the_cancellation_is_refunded_and_that_refund_is_e_mailed(
    system: SagaSystem, mailbox: Mailbox
):
    """The show-cancelled e-mail said nothing was charged; a payment that still goes through
    (here straight to Stripe, as a browser would) is refunded, and that refund is e-mailed."""
    api = system.api
    show_id = show_starting(api, in_days(30))
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-7"])
    booking = system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=10)
    cancel_show(system, show_id)
    system.wait_for_status(held["booking_id"], {CANCELLED}, timeout=20)

    pay_with_stripe(system.endpoints, booking.payment_intent_id)

    refunded = system.wait_for_status(held["booking_id"], {REFUNDED}, timeout=20)
    assert refunded.refunded_cents == refunded.paid_cents == 4500
    client = stripe_client(system.endpoints)
    assert [r.amount for r in refunds_of(client, booking.payment_intent_id)] == [4500]
    notifier_done(system)
    mails = mails_to(mailbox, fan["email"])
    assert [m["X-TicketBlitz-Event-Type"] for m in mails] == [
        "booking.cancelled",
        "booking.refunded",
    ]
    assert "You were not charged" in mails[0].get_content()
    assert "we refunded 45.00 EUR" in mails[1].get_content()
