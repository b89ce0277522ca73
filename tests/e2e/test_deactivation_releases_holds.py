"""Deactivating an account, over HTTP with the real servers and the workers: its unpaid holds
are cancelled and their seats go back on sale; what it paid for stays its own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from audit.verify import verify
from commands.models import BookingRequest, PlaceHold
from domain.booking import CANCELLED, CONFIRMED, PAYMENT_REQUESTED
from infra.log_follower import positions_of
from process_managers.account_deactivation import ACCOUNT_DEACTIVATED
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    in_days,
    running_system,
    show_starting,
    wait_until,
)
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "account-deactivation") as started:
        yield started


def set_active(system: SagaSystem, account_id: str, active: bool) -> int:
    """The admin deactivates (or reactivates) the account; the log's head after it."""
    api = system.api
    action = "reactivate" if active else "deactivate"
    r = api.http.post(f"/admin/accounts/{account_id}/{action}", headers=api.admin())
    assert r.status_code == 200, r.text
    assert r.json()["active"] is active
    head: int = system.store.head_position()
    return head


def releases_done(system: SagaSystem, account_id: str, position: int) -> None:
    """Until the log up to `position` reached the follower and the account's task is done."""

    def done() -> bool:
        with system.store.connection() as conn:
            followed = positions_of(conn).get("account-deactivation", (0, None))[0]
            pending = conn.execute(
                "SELECT count(*) FROM account_deactivation_tasks WHERE account_id = %s",
                (account_id,),
            ).fetchone()
        return followed >= position and pending is not None and pending[0] == 0

    wait_until(done, 30, f"the unpaid holds of account {account_id} to be released")


def test_deactivating_an_account_releases_its_unpaid_holds_and_keeps_its_tickets(
    system: SagaSystem,
):
    api = system.api
    show_a, show_b = show_starting(api, in_days(30)), show_starting(api, in_days(31))
    leaving, staying = api.new_customer(), api.new_customer()
    paid = book(api, leaving, show_a, seats=["A-1-1"], payment_method=VISA)
    unpaid_a = book(api, leaving, show_a, seats=["A-1-2", "A-1-3"])
    unpaid_b = book(api, leaving, show_b, seats=["A-1-1"])
    other = book(api, staying, show_a, seats=["A-1-4"])
    system.wait_for_status(paid["booking_id"], {CONFIRMED}, timeout=15)
    for booking in (unpaid_a, unpaid_b, other):
        system.wait_for_status(booking["booking_id"], {PAYMENT_REQUESTED}, timeout=10)

    releases_done(system, leaving["account_id"], set_active(system, leaving["account_id"], False))

    for booking, show_id in ((unpaid_a, show_a), (unpaid_b, show_b)):
        released = system.booking(booking["booking_id"])
        assert (released.status, released.reason) == (CANCELLED, ACCOUNT_DEACTIVATED)
        assert system.inventory(show_id).claim_of(released.id) is None
    kept = system.booking(paid["booking_id"])
    assert kept.status == CONFIRMED
    assert system.inventory(show_a).claim_of(kept.id) is not None
    assert system.booking(other["booking_id"]).status == PAYMENT_REQUESTED  # not theirs
    # The seats are on sale again: someone else holds them.
    newcomer = api.new_customer()
    book(api, newcomer, show_a, seats=["A-1-2", "A-1-3"])
    book(api, newcomer, show_b, seats=["A-1-1"])


def test_a_hold_that_lands_after_the_deactivation_is_released_too(system: SagaSystem):
    """A hold decided just after the account was deactivated (a request in flight): the
    deactivation reaches it as well. Once reactivated, the account's holds are its own again."""
    api = system.api
    show_id = show_starting(api, in_days(30))
    customer = api.new_customer()
    account_id = UUID(customer["account_id"])
    set_active(system, customer["account_id"], False)

    def hold(seat: str) -> str:
        command = PlaceHold(
            request=BookingRequest(show_id=UUID(show_id), seats=[seat]),
            customer_id=account_id,
            booking_id=uuid4(),
        )
        placed = system.container.bookings.place_hold(command).result(timeout=30)
        return str(placed.booking_id)

    late = hold("A-1-5")
    released = system.wait_for_status(late, {CANCELLED}, timeout=30)
    assert released.reason == ACCOUNT_DEACTIVATED
    assert system.inventory(show_id).claim_of(released.id) is None

    releases_done(system, customer["account_id"], set_active(system, customer["account_id"], True))
    kept = hold("A-1-6")
    releases_done(system, customer["account_id"], system.store.head_position())
    assert system.booking(kept).status != CANCELLED
    assert system.inventory(show_id).claim_of(UUID(kept)) is not None


def test_the_log_with_deactivations_and_their_releases_passes_the_audit(system: SagaSystem):
    """The log (with every deactivation and release of this module's tests so far, and one of
    its own) passes `audit verify`."""
    api = system.api
    show_id = show_starting(api, in_days(30))
    customer = api.new_customer()
    held = book(api, customer, show_id, seats=["A-1-9"])
    system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=10)
    releases_done(system, customer["account_id"], set_active(system, customer["account_id"], False))
    assert system.booking(held["booking_id"]).status == CANCELLED

    report = verify(system.store, refund_grace=timedelta(minutes=15))

    assert report.violation_count == 0, "\n".join(str(v) for v in report.violations)
