"""Every follower of the log SIGKILLed at random moments, again and again, and restarted.

Given the booking saga, hold expiry, the Kafka relay, the notifier, the recommender and the
hash chain (`ticketblitz workers`), and the read models' runners (`ticketblitz projections
run`), each in a process of its own,
when bookings are placed, paid, declined, left to expire and cancelled while those processes
are killed (SIGKILL) at random moments a few times and started again,
then once all is quiet the end state is the one the event log dictates, as a run without a
kill would have left it: the read models equal a clean rebuild from the log, the recommender's
tables equal a clean rebuild from the topics, every booking has its expected outcome with one
charge per paid booking, every integration event is on Kafka, each e-mail went out once, and
`ticketblitz audit verify` passes (rules and hash chain).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from domain.booking import CONFIRMED, FINAL, REFUNDED, Booking
from infra.log_follower import positions_of
from process_managers.integration_events import event_id_for
from process_managers.notifier import SENDING
from projections.rebuild import Rebuild
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
    wait_until,
)
from tests.faults.support import (
    CliProcess,
    emails_by_event,
    emails_due,
    group_lag,
    published_events,
    run_cli,
    seeded_random,
)
from tests.integration.projection_support import snapshot
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BOOKINGS = 84
CUSTOMERS = 12
SEATS_PER_ROW = 21
KILLS = 4
METHODS = {"visa": VISA, "cancelled": VISA, "declined": DECLINED}
# Columns of the recommender's tables that say when, not what (a rebuild differs there).
PROCESSING_TIMES = {
    "consumer_offsets.updated_at",
    "pending_embeddings.next_attempt_at",
    "skipped_records.skipped_at",
}


@pytest.fixture
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    """The APIs in this process; the followers are the test's to start and kill."""
    started = start_system(endpoints, stack_dir / "kill-all", short_hold_minutes=0.05)
    yield started
    started.close()


@pytest.fixture
def followers(system: SagaSystem, stack_dir: Path) -> Iterator[dict[str, CliProcess]]:
    processes = {
        name: CliProcess(args, system.settings, stack_dir / f"kill-all-{name}.log")
        for name, args in (("workers", ["workers"]), ("projections", ["projections", "run"]))
    }
    for process in processes.values():
        process.start()
    yield processes
    for process in processes.values():
        process.stop()


def test_followers_killed_at_random_end_in_the_state_the_log_dictates(
    system: SagaSystem, followers: dict[str, CliProcess], mailbox: Mailbox
):
    rng = seeded_random()
    api = system.api
    rows = BOOKINGS // SEATS_PER_ROW
    show_id = show_starting(api, in_days(30), seats=SEATS_PER_ROW, rows=rows)
    customers = [api.new_customer()["Authorization"] for _ in range(CUSTOMERS)]
    plan = [planned(system, i, show_id, customers[i % CUSTOMERS]) for i in range(BOOKINGS)]
    try:
        booking_ids = asyncio.run(placing_and_killing(system, plan, followers, rng))
        wait_until(lambda: quiet(system, booking_ids), 120, "every follower to be done")
        for process in followers.values():
            process.stop()  # the end state, frozen

        bookings = {b: system.booking(b) for b in booking_ids}
        for each, booking in zip(plan, bookings.values(), strict=True):
            assert booking.status in EXPECTED[each.kind], (each, booking)
        print("final:", dict(Counter(b.status for b in bookings.values())))
        assert_read_models_as_rebuilt(system, bookings)
        assert_recommender_as_rebuilt(system)
        assert_one_charge_per_paid_booking(system, bookings)
        assert_every_event_on_kafka(system, bookings)
        assert_one_email_per_event(system, mailbox, bookings, followers["workers"].kills)
        verified = run_cli(["audit", "verify"], system.settings)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    except AssertionError:
        for process in followers.values():
            print(f"--- {process.name} ---\n{process.log_tail()}")
        with system.store.connection() as conn:
            print("head", system.store.head_position(), positions_of(conn))
        raise


def planned(system: SagaSystem, i: int, show_id: str, auth: str) -> Planned:
    kind = KINDS[i % len(KINDS)]
    seat = f"A-{i // SEATS_PER_ROW + 1}-{i % SEATS_PER_ROW + 1}"
    body: dict[str, Any] = {"show_id": show_id, "seats": [seat]}
    if kind in METHODS:
        body["payment_method"] = METHODS[kind]
    api = system.short_hold_api if kind == "unpaid" else system.api
    return Planned(kind, api.base_url, body, auth)


async def placing_and_killing(
    system: SagaSystem,
    plan: list[Planned],
    followers: dict[str, CliProcess],
    rng: random.Random,
) -> list[str]:
    """Place the bookings; meanwhile kill followers KILLS times at random moments (a random
    choice of the processes each time) and start them again at once."""
    placing = asyncio.create_task(place_all(plan, lambda b: system.booking(b).status))
    started = time.monotonic()
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.2, 2.5))
        victims = rng.choice([["workers"], ["projections"], ["workers", "projections"]])
        for name in victims:
            await asyncio.to_thread(followers[name].kill)
            followers[name].start()
        print(f"killed {' and '.join(victims)} {time.monotonic() - started:.2f} s in")
    return await asyncio.wait_for(placing, 90)


def quiet(system: SagaSystem, booking_ids: list[str]) -> bool:
    """Every booking final, every follower of the log at its head, no saga task or hold
    deadline left, and the notifier has consumed every record of the bookings topic."""
    if not all(system.booking(b).status in FINAL for b in booking_ids):
        return False
    head = system.store.head_position()
    with system.store.connection() as conn:
        behind = [name for name, (at, _) in positions_of(conn).items() if at < head]
        tasks = conn.execute("SELECT count(*) FROM payment_saga_tasks").fetchone()
        deadlines = conn.execute("SELECT count(*) FROM hold_deadlines").fetchone()
    if behind or (tasks and tasks[0]) or (deadlines and deadlines[0]):
        return False
    assert system.endpoints.kafka_bootstrap is not None
    group = system.settings.kafka_notifier_group
    return group_lag(system.endpoints.kafka_bootstrap, group, system.bookings_topic) == 0


def assert_read_models_as_rebuilt(system: SagaSystem, bookings: dict[str, Booking]) -> None:
    url = system.settings.database_url
    assert url is not None
    followed = snapshot(url)
    statuses = {str(row[0]): row[3] for row in followed["bookings"]}
    assert statuses == {b: booking.status for b, booking in bookings.items()}
    Rebuild(system.store).run()  # every read model replayed from the log into new tables
    assert snapshot(url) == followed


def recommender_tables(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the `rec` schema, sorted, without the columns that record
    when the consumer did something (not what it did)."""
    with psycopg.connect(database_url) as conn:
        columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'rec' ORDER BY table_name, ordinal_position"
        ).fetchall():
            if f"{table}.{column}" not in PROCESSING_TIMES:
                columns.setdefault(table, []).append(column)
        return {
            table: sorted(
                conn.execute(
                    sql.SQL("SELECT {} FROM {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, names)),
                        sql.Identifier("rec", table),
                    )
                ).fetchall(),
                key=repr,
            )
            for table, names in columns.items()
        }


def assert_recommender_as_rebuilt(system: SagaSystem) -> None:
    url = system.settings.database_url
    assert url is not None
    followed = recommender_tables(url)
    assert len(followed["bookings"]) == BOOKINGS
    rebuilt = run_cli(["recommender", "rebuild"], system.settings)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert recommender_tables(url) == followed


def assert_one_charge_per_paid_booking(system: SagaSystem, bookings: dict[str, Booking]) -> None:
    client = stripe_client(system.endpoints)
    intents = intents_of(client, bookings)
    for booking_id, booking in bookings.items():
        charged = [i.id for i in intents[booking_id] if i.status == "succeeded"]
        paid = booking.status in (CONFIRMED, REFUNDED)
        assert charged == ([booking.payment_intent_id] if paid else []), booking_id
        if booking.status == REFUNDED:
            refunds = [r.amount for r in refunds_of(client, booking.payment_intent_id)]
            assert refunds == [booking.amount_cents], booking_id


def assert_every_event_on_kafka(system: SagaSystem, bookings: dict[str, Booking]) -> None:
    assert system.endpoints.kafka_bootstrap is not None
    published = published_events(system.endpoints.kafka_bootstrap, system.bookings_topic)
    versions = {(b.id, v) for b in bookings.values() for v in range(1, b.version + 1)}
    assert set(published) == {event_id_for(b, v) for b, v in versions}
    print(f"{len(versions)} events on Kafka, {sum(published.values()) - len(versions)} repeated")


def assert_one_email_per_event(
    system: SagaSystem, mailbox: Mailbox, bookings: dict[str, Booking], kills: int
) -> None:
    """Each e-mail once; only a notifier killed between reserving an e-mail and hearing the
    server's answer leaves one in doubt (sent or not), at most one per kill."""
    expected = emails_due(system.store, bookings)
    with system.store.connection() as conn:
        rows = conn.execute("SELECT event_id::text FROM sent_emails WHERE status = %s", (SENDING,))
        in_doubt = {row[0] for row in rows.fetchall()} & expected
    received = emails_by_event(mailbox, expected)
    print(f"{len(expected)} e-mails, {len(in_doubt)} in doubt")
    assert len(in_doubt) <= kills
    assert {e: received[e] for e in expected - in_doubt} == dict.fromkeys(expected - in_doubt, 1)
    assert all(received[e] <= 1 for e in in_doubt)
