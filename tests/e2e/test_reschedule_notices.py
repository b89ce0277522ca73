"""Rescheduling a show, over HTTP with the real servers and the workers: each ticket holder is
e-mailed the new date once per reschedule (nobody else is), may cancel with a full refund until
the new start, and a notice redone after a crash adds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from audit.replay import replay_stream
from audit.verify import verify
from commands.models import AnnounceReschedule
from domain.booking import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    PAYMENT_REQUESTED,
    REFUNDED,
    BookingEvents,
)
from domain.show import Show
from infra.log_follower import positions_of
from process_managers.notifier import readable_time
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    SagaSystem,
    book,
    in_days,
    refunds_of,
    running_system,
    show_starting,
    stripe_client,
    wait_until,
)
from tests.e2e.test_show_cancellation import notifier_done
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = pytest.mark.integration

RESCHEDULED = "booking.rescheduled"


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "reschedule-notices") as started:
        yield started


def reschedule(system: SagaSystem, show_id: str, starts_at: datetime) -> int:
    """The admin moves the show to `starts_at`; the position of the change."""
    api = system.api
    r = api.http.patch(
        f"/shows/{show_id}", json={"starts_at": starts_at.isoformat()}, headers=api.admin()
    )
    assert r.status_code == 200, r.text
    position: int = r.json()["position"]
    return position


def notices_done(system: SagaSystem, show_id: str, position: int) -> None:
    """Until the reschedule at `position` reached the notices' follower and its task is done."""

    def done() -> bool:
        with system.store.connection() as conn:
            followed = positions_of(conn).get("reschedule-notices", (0, None))[0]
            pending = conn.execute(
                "SELECT count(*) FROM reschedule_notice_tasks WHERE show_id = %s", (show_id,)
            ).fetchone()
        return followed >= position and pending is not None and pending[0] == 0

    wait_until(done, 30, f"the reschedule notices of show {show_id}")


def mails_to(mailbox: Mailbox, address: str, kind: str | None = None) -> list[EmailMessage]:
    return [
        m
        for m in mailbox.messages()
        if m["To"] == address and (kind is None or m["X-TicketBlitz-Event-Type"] == kind)
    ]


def announced_events(system: SagaSystem, booking_id: str) -> list[Any]:
    return [
        e
        for e in system.store.app.events.get(system.booking(booking_id).id)
        if type(e).__qualname__ == BookingEvents.RESCHEDULE_ANNOUNCED
    ]


def test_each_ticket_holder_is_told_each_reschedule_once_and_nobody_else_is(
    system: SagaSystem, mailbox: Mailbox
):
    api = system.api
    show_id = show_starting(api, in_days(30))
    title = system.store.get(UUID(show_id), Show).title
    fans = {kind: api.new_customer() for kind in ("two", "one", "held", "cancel", "decl", "exp")}
    two = book(api, fans["two"], show_id, seats=["A-1-1", "A-1-2"], payment_method=VISA)
    one = book(api, fans["one"], show_id, seats=["A-1-3"], payment_method=VISA)
    held = book(api, fans["held"], show_id, seats=["A-1-4"])
    cancel = book(api, fans["cancel"], show_id, seats=["A-1-5"], payment_method=VISA)
    declined = book(api, fans["decl"], show_id, seats=["A-1-6"], payment_method=DECLINED)
    expired = book(system.short_hold_api, fans["exp"], show_id, seats=["A-1-7"])
    for booking in (two, one, cancel):
        system.wait_for_status(booking["booking_id"], {CONFIRMED}, timeout=15)
    r = api.http.post(
        f"/bookings/{cancel['booking_id']}/cancel",
        headers={"Authorization": fans["cancel"]["Authorization"]},
    )
    assert r.status_code == 202, r.text
    system.wait_for_status(cancel["booking_id"], {REFUNDED}, timeout=20)
    system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=10)
    system.wait_for_status(declined["booking_id"], {CANCELLED}, timeout=10)
    system.wait_for_status(expired["booking_id"], {EXPIRED}, timeout=30)
    notifier_done(system)
    before = {kind: len(mails_to(mailbox, fan["email"])) for kind, fan in fans.items()}

    first = in_days(37).replace(microsecond=0)
    notices_done(system, show_id, reschedule(system, show_id, first))
    notifier_done(system)

    # The ticket holders: one e-mail each, with the new date and the way out.
    for fan, booking in ((fans["two"], two), (fans["one"], one)):
        [mail] = mails_to(mailbox, fan["email"], RESCHEDULED)
        assert mail["Subject"] == f"New date for {title}: {readable_time(first.isoformat())}"
        assert mail["X-TicketBlitz-Booking-Id"] == booking["booking_id"]
        body = mail.get_content()
        assert f"now starts on {readable_time(first.isoformat())}" in body
        assert f"POST /bookings/{booking['booking_id']}/cancel" in body
    assert (
        "get back what you paid, 90.00 EUR, in full"
        in mails_to(mailbox, fans["two"]["email"], RESCHEDULED)[0].get_content()
    )
    # Nobody else hears of it: not the unpaid, cancelled, declined or expired bookings.
    for kind in ("held", "cancel", "decl", "exp"):
        assert len(mails_to(mailbox, fans[kind]["email"])) == before[kind], kind
    assert system.booking(held["booking_id"]).reschedule_announced == 0

    # A fan who books after the reschedule bought at the new date: nothing to tell them.
    late_fan = api.new_customer()
    late = book(api, late_fan, show_id, seats=["A-1-8"], payment_method=VISA)
    system.wait_for_status(late["booking_id"], {CONFIRMED}, timeout=15)

    second = in_days(44).replace(microsecond=0)
    notices_done(system, show_id, reschedule(system, show_id, second))
    notifier_done(system)

    # A second reschedule: a second e-mail to each holder, this one with the second date.
    for fan in (fans["two"], fans["one"]):
        mails = mails_to(mailbox, fan["email"], RESCHEDULED)
        assert [m["Subject"] for m in mails] == [
            f"New date for {title}: {readable_time(first.isoformat())}",
            f"New date for {title}: {readable_time(second.isoformat())}",
        ]
    # The late fan was a ticket holder by the second reschedule: told of that one only.
    [late_mail] = mails_to(mailbox, late_fan["email"], RESCHEDULED)
    assert late_mail["Subject"] == f"New date for {title}: {readable_time(second.isoformat())}"
    assert [e.starts_at for e in announced_events(system, late["booking_id"])] == [second]
    assert [e.starts_at for e in announced_events(system, two["booking_id"])] == [first, second]
    for kind in ("held", "cancel", "decl", "exp"):
        assert len(mails_to(mailbox, fans[kind]["email"])) == before[kind], kind


def test_a_ticket_holder_cancels_after_the_old_start_and_before_the_new_one_refunded_in_full(
    system: SagaSystem, mailbox: Mailbox
):
    """The show was to start in a few seconds; it moves a month on. Once the old start is
    past, the customer may still cancel: refunded in full, and told of the cancellation once."""
    api = system.api
    old_start = datetime.now(UTC) + timedelta(seconds=20)
    show_id = show_starting(api, old_start)
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-1", "A-1-2"], payment_method=VISA)
    booking = system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=15)
    new_start = in_days(30)
    notices_done(system, show_id, reschedule(system, show_id, new_start))
    assert system.booking(held["booking_id"]).reschedule_announced > 0
    wait_until(lambda: datetime.now(UTC) > old_start, 40, "the old start to pass")

    r = api.http.post(
        f"/bookings/{held['booking_id']}/cancel", headers={"Authorization": fan["Authorization"]}
    )

    assert r.status_code == 202, r.text
    refunded = system.wait_for_status(held["booking_id"], {REFUNDED}, timeout=20)
    assert refunded.refunded_cents == refunded.paid_cents == booking.amount_cents == 9000
    client = stripe_client(system.endpoints)
    assert [x.amount for x in refunds_of(client, booking.payment_intent_id)] == [9000]
    assert system.inventory(show_id).claim_of(booking.id) is None  # the seats are free again
    notifier_done(system)
    kinds = [m["X-TicketBlitz-Event-Type"] for m in mails_to(mailbox, fan["email"])]
    assert kinds.count(RESCHEDULED) == 1
    assert kinds.count("booking.cancelled") == 1


def test_a_notice_redone_after_a_crash_adds_nothing(system: SagaSystem, mailbox: Mailbox):
    """As if the executor died after its batches committed but before it recorded them: the
    task runs again from the start, and the bookings, told already, record nothing more."""
    api = system.api
    show_id = show_starting(api, in_days(30))
    fans = [api.new_customer() for _ in range(3)]
    held = [
        book(api, fan, show_id, seats=[f"A-1-{n}"], payment_method=VISA)
        for n, fan in enumerate(fans, start=1)
    ]
    for booking in held:
        system.wait_for_status(booking["booking_id"], {CONFIRMED}, timeout=15)
    position = reschedule(system, show_id, in_days(40))
    notices_done(system, show_id, position)
    ids = [system.booking(b["booking_id"]).id for b in held]
    [version] = {system.booking(b).reschedule_announced for b in ids}
    versions = [system.booking(b).version for b in ids]

    # The command of a batch, sent again: nothing to record.
    [event] = announced_events(system, held[0]["booking_id"])
    again = AnnounceReschedule(
        show_id=UUID(show_id),
        show_version=version,
        starts_at=event.starts_at,
        previous_starts_at=event.previous_starts_at,
        booking_ids=ids,
    )
    assert system.container.bookings.announce_reschedule(again).result(timeout=30) == 0
    # The whole task, armed again as the follower armed it (its progress lost): done again.
    with system.store.connection() as conn:
        conn.execute(
            "INSERT INTO reschedule_notice_tasks (notice_id, show_id, show_version, "
            "rescheduled_at, starts_at, previous_starts_at) "
            "VALUES (gen_random_uuid(), %s, %s, %s, %s, %s)",
            (show_id, version, position, event.starts_at, event.previous_starts_at),
        )
    notices_done(system, show_id, position)

    assert [system.booking(b).version for b in ids] == versions  # not one event more
    notifier_done(system)
    for fan, booking in zip(fans, held, strict=True):
        assert len(announced_events(system, booking["booking_id"])) == 1
        assert len(mails_to(mailbox, fan["email"], RESCHEDULED)) == 1


def test_the_log_with_reschedules_and_their_notices_passes_the_audit(system: SagaSystem):
    """The log (with every reschedule and notice of this module's tests so far, and one of its
    own) passes `audit verify`; `audit replay` shows a notice with what it says."""
    api = system.api
    show_id = show_starting(api, in_days(30))
    held = book(api, api.new_customer(), show_id, seats=["A-1-1"], payment_method=VISA)
    system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=15)
    notices_done(system, show_id, reschedule(system, show_id, in_days(35)))

    report = verify(system.store, refund_grace=timedelta(minutes=15))

    assert report.violation_count == 0, "\n".join(str(v) for v in report.violations)
    replayed = replay_stream(system.store, UUID(held["booking_id"]))
    [notice] = [e for e in replayed.events if e.type == BookingEvents.RESCHEDULE_ANNOUNCED]
    assert set(notice.payload) >= {"show_version", "starts_at", "previous_starts_at"}
