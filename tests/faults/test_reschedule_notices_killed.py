"""A show with 250 ticket holders is rescheduled while `ticketblitz workers` is SIGKILLed at
random moments and started again.

Given 250 confirmed bookings of one show, each by its own customer,
when an admin moves the show to a new date and the workers (reschedule notices, relay,
notifier) are killed a few times meanwhile, at random moments (the seed is printed; set
TICKETBLITZ_TEST_SEED to replay a run's moments), some of them between a batch of notices and
the record of its progress,
then each booking records the reschedule exactly once, and each customer got exactly one e-mail
about it (a notifier killed between reserving an e-mail and the server's answer may leave one in
doubt per kill: sent at most once, SMTP has no idempotency key), and the audit passes.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from audit.verify import verify
from commands.models import BookingRequest, PlaceHold, RegisterAccount
from domain.booking import BookingEvents
from infra.log_follower import positions_of
from process_managers.integration_events import event_id_for
from process_managers.notifier import SENDING
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    in_days,
    show_starting,
    start_system,
    wait_until,
)
from tests.faults.support import CliProcess, group_lag, seeded_random
from tests.faults.test_mass_cancellation import count_events
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BOOKINGS = 250  # three batches of notices (100 a batch)
SEATS_PER_ROW = 25
KILLS = 3
ANNOUNCED = BookingEvents.RESCHEDULE_ANNOUNCED
FOLLOWERS = ("reschedule-notices", "kafka-relay")


@pytest.fixture
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    """The APIs in this process; the workers are the test's to start and kill."""
    started = start_system(endpoints, stack_dir / "reschedule-killed")
    yield started
    started.close()


@pytest.fixture
def workers(system: SagaSystem, stack_dir: Path) -> Iterator[CliProcess]:
    settings = system.settings.model_copy(update={"saga_threads": 8})
    process = CliProcess(["workers"], settings, stack_dir / "reschedule-killed-workers.log")
    process.start()
    yield process
    process.stop()


def test_each_ticket_holder_is_told_of_a_reschedule_once_while_workers_are_killed(
    system: SagaSystem, workers: CliProcess, mailbox: Mailbox
):
    rng = seeded_random()  # prints its seed; TICKETBLITZ_TEST_SEED replays it
    show_id = show_starting(system.api, in_days(30), SEATS_PER_ROW, BOOKINGS // SEATS_PER_ROW)
    try:
        booking_ids = place_paid_bookings(system, show_id)
        wait_until(
            lambda: count_events(system, "Booking.Confirmed") == BOOKINGS,
            240,  # a deadline, not a claim: 250 charges through the emulator on a busy machine
            f"{BOOKINGS} bookings to be confirmed",
        )

        r = system.api.http.patch(
            f"/shows/{show_id}",
            json={"starts_at": in_days(40).isoformat()},
            headers=system.api.admin(),
        )
        assert r.status_code == 200, r.text
        announcing_and_killing(system, workers, rng)
        wait_until(lambda: quiet(system), 240, "every notice and e-mail to be done")
        workers.stop()  # the end state, frozen

        announced = announcements(system, booking_ids)
        assert {b: len(e) for b, e in announced.items() if len(e) != 1} == {}
        assert count_events(system, ANNOUNCED) == BOOKINGS
        assert_each_customer_emailed_once(system, mailbox, announced, workers.kills)
        report = verify(system.store, refund_grace=timedelta(minutes=15))
        assert report.violation_count == 0, "\n".join(str(v) for v in report.violations)
    except AssertionError:
        print(f"--- the workers' log ---\n{workers.log_tail(60)}")
        with system.store.connection() as conn:
            tasks = conn.execute("SELECT * FROM reschedule_notice_tasks LIMIT 5").fetchall()
            print("reschedule_notice_tasks", tasks)
            print("head", system.store.head_position(), positions_of(conn))
        raise


def place_paid_bookings(system: SagaSystem, show_id: str) -> list[str]:
    """One customer per booking, each holding one seat with a card that pays at once (through
    the command handlers: the HTTP layer is not what this test is about)."""
    accounts = system.container.accounts

    def register(i: int) -> UUID:
        email = f"moved-{i}-{uuid4().hex[:8]}@example.com"
        command = RegisterAccount(email=email, password="correct horse battery", name=f"Fan {i}")
        return accounts.register(command).account_id

    with ThreadPoolExecutor(8) as pool:
        customers = list(pool.map(register, range(BOOKINGS)))
    holds = [
        system.container.bookings.place_hold(
            PlaceHold(
                request=BookingRequest(
                    show_id=UUID(show_id),
                    seats=[f"A-{i // SEATS_PER_ROW + 1}-{i % SEATS_PER_ROW + 1}"],
                    payment_method=VISA,
                ),
                customer_id=customer,
                booking_id=uuid4(),
            )
        )
        for i, customer in enumerate(customers)
    ]
    return [str(hold.result(timeout=60).booking_id) for hold in holds]


def announcing_and_killing(system: SagaSystem, workers: CliProcess, rng: random.Random) -> None:
    """Kill the workers KILLS times and start them again at once: first at a random moment
    just after the reschedule, then each time the notices reached a random count (a batch
    just committed: its progress may not be recorded yet)."""
    moments = [rng.uniform(0.0, 1.0), *sorted(rng.sample(range(1, BOOKINGS), KILLS - 1))]
    for index, moment in enumerate(moments):
        if index == 0:
            time.sleep(moment)
        else:
            wait_until(notices_reached(system, int(moment)), 120, f"{int(moment)} notices")
        reached = count_events(system, ANNOUNCED)
        workers.kill()
        workers.start()
        print(f"killed the workers at {reached} notices")


def notices_reached(system: SagaSystem, count: int) -> Callable[[], bool]:
    return lambda: count_events(system, ANNOUNCED) >= count


def quiet(system: SagaSystem) -> bool:
    """Every notice recorded, no task left, the followers at the head of the log and the
    notifier done with every record of the bookings topic."""
    if count_events(system, ANNOUNCED) < BOOKINGS:
        return False
    head = system.store.head_position()
    with system.store.connection() as conn:
        positions = positions_of(conn)
        tasks = conn.execute("SELECT count(*) FROM reschedule_notice_tasks").fetchone()
    if tasks is None or tasks[0] or any(positions[n][0] < head for n in FOLLOWERS):
        return False
    assert system.endpoints.kafka_bootstrap is not None
    group = system.settings.kafka_notifier_group
    return group_lag(system.endpoints.kafka_bootstrap, group, system.bookings_topic) == 0


def announcements(system: SagaSystem, booking_ids: list[str]) -> dict[str, list[str]]:
    """Each booking's RescheduleAnnounced events, by the id of their integration event."""
    found: dict[str, list[str]] = {}
    for booking_id in booking_ids:
        found[booking_id] = [
            str(event_id_for(e.originator_id, e.originator_version))
            for e in system.store.app.events.get(UUID(booking_id))
            if type(e).__qualname__ == ANNOUNCED
        ]
    return found


def assert_each_customer_emailed_once(
    system: SagaSystem, mailbox: Mailbox, announced: dict[str, list[str]], kills: int
) -> None:
    notices = {booking_id: events[0] for booking_id, events in announced.items()}
    received: defaultdict[str, list[str]] = defaultdict(list)  # booking -> notices e-mailed
    for message in mailbox.messages():
        booking_id = str(message["X-TicketBlitz-Booking-Id"])
        if booking_id in notices and message["X-TicketBlitz-Event-Type"] == "booking.rescheduled":
            received[booking_id].append(str(message["X-TicketBlitz-Event-Id"]))
    with system.store.connection() as conn:
        rows = conn.execute("SELECT event_id::text FROM sent_emails WHERE status = %s", (SENDING,))
        in_doubt = {row[0] for row in rows.fetchall()} & set(notices.values())
    print(f"{BOOKINGS} reschedule e-mails due, {len(in_doubt)} in doubt after {kills} kills")
    assert len(in_doubt) <= kills
    for booking_id, event_id in notices.items():
        expected = [] if event_id in in_doubt and not received[booking_id] else [event_id]
        assert received[booking_id] == expected, (booking_id, received[booking_id])
