"""A sold-out show's seats come back to 30 waiting fans while `ticketblitz workers` is
SIGKILLed at random moments and started again.

Given a show of 10 seats, all held, and 30 fans waiting for 1 ticket each (every fifth one pays
the offer it gets, the others let it lapse: offers last 6 s),
when the holds expire and the workers (hold expiry, waitlist offers) are killed a few times
while the offers go round (the seed is printed; TICKETBLITZ_TEST_SEED replays a run's moments),
then every entry ends with exactly one offer, fulfilled if its fan paid and lapsed otherwise (no
entry lost, none offered twice), no seat was held for two at once, and the audit passes.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from audit.verify import verify
from domain.booking import HELD
from domain.ids import waiting_list_id_for
from domain.waitlist import ACTIVE, FULFILLED, LAPSED, OFFERED, WaitingList, offer_booking_id_for
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    in_days,
    show_starting,
    start_system,
    wait_until,
)
from tests.faults.support import CliProcess, seeded_random
from ticketblitz.embedded import StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SEATS = 10
FANS = 30
KILLS = 3
OFFER_MINUTES = 0.1  # 6 s


@pytest.fixture
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    """The APIs in this process (holds of 3 s on the short one); the workers are the test's."""
    started = start_system(endpoints, stack_dir / "waitlist-killed")
    yield started
    started.close()


@pytest.fixture
def workers(system: SagaSystem, stack_dir: Path) -> Iterator[CliProcess]:
    settings = system.settings.model_copy(update={"waitlist_offer_minutes": OFFER_MINUTES})
    process = CliProcess(["workers"], settings, stack_dir / "waitlist-killed-workers.log")
    yield process
    process.stop()


def test_waiting_fans_get_one_offer_each_while_the_workers_are_killed(
    system: SagaSystem, workers: CliProcess
):
    rng = seeded_random()  # prints its seed; TICKETBLITZ_TEST_SEED replays it
    api = system.api
    show_id = show_starting(api, in_days(30), seats=SEATS)
    fans = [api.new_customer() for _ in range(FANS)]
    for n in range(1, SEATS + 1):  # 3 s holds: they expire once the workers run
        book(system.short_hold_api, api.new_customer(), show_id, seats=[f"A-1-{n}"])
    entries: dict[UUID, dict[str, str]] = {}
    for fan in fans:
        r = api.http.post(
            f"/shows/{show_id}/waitlist",
            json={"quantity": 1},
            headers={"Authorization": fan["Authorization"]},
        )
        assert r.status_code == 201, r.text
        entries[UUID(r.json()["entry_id"])] = fan
    payers = set(list(entries)[::5])
    try:
        workers.start()
        paid = offering_and_killing(system, workers, rng, show_id, payers)
        wait_until(lambda: settled(system, show_id), 180, "every entry to be settled")
        workers.stop()  # the end state, frozen

        waiting_list = list_of(system, show_id)
        statuses = {UUID(k): e.status for k, e in waiting_list.entries.items()}
        assert set(statuses) == set(entries)  # no entry lost
        assert {
            e: s for e, s in statuses.items() if s != (FULFILLED if e in paid else LAPSED)
        } == {}
        offers = offers_made(system, show_id)
        assert {e: n for e, n in offers.items() if n != 1} == {}  # one offer each, never two
        assert set(offers) == set(entries)
        report = verify(system.store, refund_grace=timedelta(minutes=15))
        assert report.violation_count == 0, "\n".join(str(v) for v in report.violations)
        print(f"{len(paid)} offers paid, {FANS - len(paid)} lapsed, {workers.kills} kills")
    except AssertionError:
        print(f"--- the workers' log ---\n{workers.log_tail(60)}")
        with system.store.connection() as conn:
            print("tasks", conn.execute("SELECT * FROM waitlist_settle_tasks").fetchall())
        raise


def offering_and_killing(
    system: SagaSystem,
    workers: CliProcess,
    rng: random.Random,
    show_id: str,
    payers: set[UUID],
) -> set[UUID]:
    """Pay the payers' offers as they come; kill the workers (and start them again at once)
    when the offers made reach random counts. Answers the entries whose offer was paid."""
    moments = sorted(rng.sample(range(1, FANS), KILLS))
    paid: set[UUID] = set()
    tried: set[UUID] = set()
    deadline = time.monotonic() + 180
    while moments or not payers <= tried:
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out: kills left at {moments}, payers left {payers - tried}"
            )
        made = sum(offers_made(system, show_id).values())
        if moments and made >= moments[0]:
            workers.kill()
            workers.start()
            print(f"killed the workers at {made} offers")
            moments.pop(0)
        for entry_id, entry in list_of(system, show_id).entries.items():
            key = UUID(entry_id)
            if key in payers and key not in tried and entry.status == OFFERED:
                tried.add(key)
                if pay(system, key, entry.customer):
                    paid.add(key)
        time.sleep(0.05)
    return paid


def pay(system: SagaSystem, entry_id: UUID, customer: str) -> bool:
    """The fan's offer is paid (by an admin, for them: the same command); False if it lapsed
    first (a late payer on a slow machine)."""
    booking = system.booking(offer_booking_id_for(entry_id))
    assert booking.offer and booking.customer_id.hex == customer
    admin = system.api.admin()

    def answered() -> Any:
        if system.booking(booking.id).status != HELD:
            return "lapsed"
        r = system.api.http.post(
            f"/bookings/{booking.id}/pay", json={"payment_method": VISA}, headers=admin
        )
        # 503 `payment-not-ready`: the saga (killed, maybe) has not created the intent yet.
        return None if r.status_code == 503 else r

    r = wait_until(answered, 60, f"an answer to paying {booking.id}")
    if r == "lapsed":
        return False
    assert r.status_code in (200, 402, 409), r.text
    return bool(r.status_code == 200)


def list_of(system: SagaSystem, show_id: str) -> WaitingList:
    found: WaitingList = system.store.get(waiting_list_id_for(UUID(show_id)), WaitingList)
    return found


def offers_made(system: SagaSystem, show_id: str) -> Counter[UUID]:
    events: Any = system.store.app.events.get(waiting_list_id_for(UUID(show_id)))
    return Counter(e.entry_id for e in events if type(e).__qualname__ == "WaitingList.OfferMade")


def settled(system: SagaSystem, show_id: str) -> bool:
    return not any(e.status in ACTIVE for e in list_of(system, show_id).entries.values())
