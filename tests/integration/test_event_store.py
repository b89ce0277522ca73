"""The PostgreSQL event store adapter against the real server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import pytest

from commands.errors import NotFoundError, VersionConflictError
from domain.account import Account
from domain.booking import Booking
from infra.embedded import StackEndpoints
from infra.event_store import PostgresEventStore
from tests.unit.factories import a_booking

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(endpoints: StackEndpoints):
    assert endpoints.database_url is not None
    opened = PostgresEventStore(endpoints.database_url, pool_size=2)
    yield opened
    opened.close()


def test_a_stale_expected_version_is_a_conflict(store: PostgresEventStore):
    account = Account(
        email=f"{uuid4().hex}@example.com", name="A", password_hash="h", role="customer"
    )
    store.save(account)
    first = store.get(account.id, Account)
    second = store.get(account.id, Account)
    first.change_password_hash("h2")
    second.change_password_hash("h3")
    store.save(first)
    with pytest.raises(VersionConflictError):
        store.save(second)
    assert store.get(account.id, Account).password_hash == "h2"
    assert store.version_of(account.id) == 2


def test_unknown_or_mistyped_streams_are_not_found(store: PostgresEventStore):
    with pytest.raises(NotFoundError):
        store.get(uuid4(), Account)
    account = Account(
        email=f"{uuid4().hex}@example.com", name="A", password_hash="h", role="customer"
    )
    store.save(account)
    with pytest.raises(NotFoundError):
        store.get(account.id, Booking)


def test_a_large_group_commit_is_one_transaction_and_returns(store: PostgresEventStore):
    """Over 1 MB in one append: the library's pipelined insert hung at this size."""
    bookings = [a_booking() for _ in range(3000)]
    assert (
        sum(len(store.app.mapper.to_stored_event(b.pending_events[0]).state) for b in bookings)
        > 1_000_000
    )
    head = store.head_position()
    with ThreadPoolExecutor(1) as pool:
        position = pool.submit(store.save, *bookings).result(timeout=60)
    assert position >= head + 3000
    assert store.get(bookings[-1].id, Booking).seats == bookings[-1].seats


def test_the_show_lock_excludes_a_second_holder(store: PostgresEventStore):
    show_id = uuid4()
    order: list[str] = []

    def second_writer() -> None:
        with store.show_lock(show_id):
            order.append("second")

    pool = ThreadPoolExecutor(1)
    with store.show_lock(show_id):
        waiting = pool.submit(second_writer)
        assert not waiting.done()
        order.append("first")
    waiting.result(timeout=10)
    pool.shutdown()
    assert order == ["first", "second"]
