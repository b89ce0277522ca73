"""`ticketblitz workers` killed (SIGKILL) at a random moment during 200 bookings, then started
again: every booking ends final, with one charge per confirmed booking, one e-mail per event
and every event on Kafka."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.booking import CONFIRMED, FINAL, REFUNDED, Booking
from infra.log_follower import positions_of
from process_managers.integration_events import BOOKING_TYPES, event_id_for
from process_managers.notifier import SENDING, SUBJECTS
from tests.e2e.saga_support import (
    DECLINED,
    EXPECTED,
    KINDS,
    VISA,
    Planned,
    SagaSystem,
    in_days,
    intents_of,
    place_all,
    refunds_of,
    show_starting,
    start_system,
    stripe_client,
    topic_events,
    wait_until,
)
from tests.faults.support import CliProcess
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = pytest.mark.integration

BOOKINGS = 200
CUSTOMERS = 20
SEATS_PER_ROW = 25
WORKER_FOLLOWERS = ("payment-saga", "hold-expiry", "kafka-relay")


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    started = start_system(endpoints, stack_dir / "crash", short_hold_minutes=0.05)
    yield started
    started.close()


def quiet(system: SagaSystem) -> bool:
    """Every follower at the head of the log and no saga task or hold deadline left."""
    with system.store.connection() as conn:
        head = system.store.head_position()
        behind = conn.execute(
            "SELECT count(*) FROM follower_positions WHERE position < %s AND name = ANY(%s)",
            (head, list(WORKER_FOLLOWERS)),
        ).fetchone()[0]
        tasks = conn.execute("SELECT count(*) FROM payment_saga_tasks").fetchone()[0]
        deadlines = conn.execute("SELECT count(*) FROM hold_deadlines").fetchone()[0]
    return behind == 0 and tasks == 0 and deadlines == 0


def test_workers_killed_mid_run_resume_with_no_double_charge_and_one_email_per_event(
    system: SagaSystem, mailbox: Mailbox, stack_dir: Path
):
    seed = random.randrange(1_000_000)
    print(f"seed {seed}")
    worker = CliProcess(["workers"], system.settings, stack_dir / "crash-workers.log")
    worker.start()  # it boots while the show and the customers are created
    api = system.api
    show_id = show_starting(api, in_days(30), seats=SEATS_PER_ROW, rows=BOOKINGS // SEATS_PER_ROW)
    customers = [api.new_customer()["Authorization"] for _ in range(CUSTOMERS)]
    plan = [_planned(system, i, show_id, customers[i % CUSTOMERS]) for i in range(BOOKINGS)]
    try:
        started = time.monotonic()
        booking_ids, killed_after = asyncio.run(
            _placing_and_killing(plan, worker, system, random.Random(seed))
        )
        print(f"killed the workers {killed_after:.2f} s into the run and started them again")
        wait_until(
            lambda: all(system.booking(b).status in FINAL for b in booking_ids) and quiet(system),
            60,
            "every booking to be final and the workers idle",
        )
        print(f"{BOOKINGS} bookings final {time.monotonic() - started:.2f} s after the start")
        bookings = {b: system.booking(b) for b in booking_ids}
        for planned, booking in zip(plan, bookings.values(), strict=True):
            assert booking.status in EXPECTED[planned.kind], (planned, booking)
        print("final:", dict(Counter(b.status for b in bookings.values())))

        _assert_one_charge_per_paid_booking(system, bookings)
        _assert_one_email_per_event(system, mailbox, bookings)
        _assert_every_event_published(system, bookings)
    except AssertionError:
        print(f"--- the workers' log ---\n{worker.log_tail()}\n--- their state ---")
        with system.store.connection() as conn:
            for table in ("payment_saga_tasks", "hold_deadlines"):
                print(table, conn.execute(f"SELECT * FROM {table} LIMIT 5").fetchall())
            print("head", system.store.head_position(), positions_of(conn))
        raise
    finally:
        worker.stop()


def _planned(system: SagaSystem, i: int, show_id: str, auth: str) -> Planned:
    kind = KINDS[i % len(KINDS)]
    seat = f"A-{i // SEATS_PER_ROW + 1}-{i % SEATS_PER_ROW + 1}"
    body: dict[str, Any] = {"show_id": show_id, "seats": [seat]}
    method = {"visa": VISA, "cancelled": VISA, "declined": DECLINED}.get(kind)
    if method is not None:
        body["payment_method"] = method
    api = system.short_hold_api if kind == "unpaid" else system.api
    return Planned(kind, api.base_url, body, auth)


async def _placing_and_killing(
    plan: list[Planned],
    worker: CliProcess,
    system: SagaSystem,
    rng: random.Random,
) -> tuple[list[str], float]:
    """Place the bookings; meanwhile, once the workers are busy, kill them at a random moment
    and start them again."""
    started = time.monotonic()
    before = system.store.head_position()
    placing = asyncio.create_task(place_all(plan, lambda b: system.booking(b).status))
    deadline = time.monotonic() + 60
    while not _saga_busy(system, before):
        assert time.monotonic() < deadline, "the saga never got busy within 60 s"
        await asyncio.sleep(0.02)
    await asyncio.sleep(rng.uniform(0.0, 1.5))
    worker.kill()
    killed_after = time.monotonic() - started
    worker.start()
    booking_ids = await asyncio.wait_for(placing, 60)
    print(f"placed (and cancelled) in {time.monotonic() - started:.2f} s")
    return booking_ids, killed_after


def _saga_busy(system: SagaSystem, before: int) -> bool:
    """The workers are at work on the bookings (the saga follower moved past `before`)."""
    with system.store.connection() as conn:
        row = conn.execute(
            "SELECT position FROM follower_positions WHERE name = 'payment-saga'"
        ).fetchone()
    return row is not None and row[0] > before


def _assert_one_charge_per_paid_booking(system: SagaSystem, bookings: dict[str, Booking]) -> None:
    client = stripe_client(system.endpoints)
    intents = intents_of(client, bookings)
    for booking_id, booking in bookings.items():
        charged = [i for i in intents[booking_id] if i.status == "succeeded"]
        if booking.status in (CONFIRMED, REFUNDED):
            assert [i.id for i in charged] == [booking.payment_intent_id], booking_id
            refunds = [r.amount for r in refunds_of(client, charged[0].id)]
            assert refunds == ([] if booking.status == CONFIRMED else [booking.amount_cents])
        else:
            assert charged == [], (booking_id, booking.status)
    spare = sum(len(found) - 1 for found in intents.values() if found)
    print(f"never-confirmed spare intents (a create repeated after the kill): {spare}")


def _assert_one_email_per_event(
    system: SagaSystem, mailbox: Mailbox, bookings: dict[str, Booking]
) -> None:
    expected = {
        str(event_id_for(booking.id, event.originator_version))
        for booking in bookings.values()
        for event in system.store.app.events.get(booking.id)
        if BOOKING_TYPES[type(event).__qualname__] in SUBJECTS
    }
    with system.store.connection() as conn:
        rows = conn.execute(
            "SELECT event_id::text FROM sent_emails WHERE status = %s", (SENDING,)
        ).fetchall()
    in_doubt = {row[0] for row in rows} & expected

    def received() -> Counter[str] | None:
        ids = Counter(str(m["X-TicketBlitz-Event-Id"]) for m in mailbox.messages())
        return ids if expected - in_doubt <= set(ids) else None

    counts = wait_until(received, 30, f"{len(expected)} e-mails")
    delivered = sum(counts[e] for e in in_doubt)
    print(
        f"{len(expected)} e-mails expected; {len(in_doubt)} in doubt (killed while sending), "
        f"of which {delivered} went out"
    )
    assert len(in_doubt) <= 1  # one notifier, sending one e-mail at a time
    for event_id in expected:
        assert counts[event_id] == 1 or (event_id in in_doubt and counts[event_id] == 0)


def _assert_every_event_published(system: SagaSystem, bookings: dict[str, Booking]) -> None:
    expected = {
        event_id_for(booking.id, version)
        for booking in bookings.values()
        for version in range(1, booking.version + 1)
    }
    assert system.endpoints.kafka_bootstrap is not None
    published = Counter(
        e.event_id
        for e in topic_events(system.endpoints.kafka_bootstrap, system.bookings_topic)
        if e.event_id in expected
    )
    assert set(published) == expected
    print(f"{len(expected)} events on Kafka, {sum(published.values()) - len(expected)} repeated")
