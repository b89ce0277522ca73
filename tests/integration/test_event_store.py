"""The PostgreSQL event store adapter against the real server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from uuid import UUID, uuid4

import psycopg
import pytest

from commands.errors import NotFoundError, VersionConflictError
from domain.account import Account
from domain.booking import Booking
from infra.event_store import PostgresEventStore, advisory_key
from tests.e2e.saga_support import wait_until
from tests.unit.factories import a_booking
from ticketblitz.embedded import StackEndpoints

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


def advisory_lock_sessions(database_url: str, show_id: UUID) -> dict[bool, int]:
    """How many sessions hold (True) and wait for (False) the show's advisory lock, as
    PostgreSQL itself reports it (pg_locks splits a bigint key into two 32-bit oids)."""
    key = advisory_key(show_id) & 0xFFFF_FFFF_FFFF_FFFF
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT l.granted, count(*) FROM pg_locks l"
            " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s"
            " AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
            " AND (l.granted OR a.wait_event_type = 'Lock')"
            " GROUP BY l.granted",
            (key >> 32, key & 0xFFFF_FFFF),
        ).fetchall()
    return {bool(granted): int(n) for granted, n in rows}


def test_the_show_lock_excludes_a_second_holder(
    store: PostgresEventStore, endpoints: StackEndpoints
):
    """A second writer (another pool, as another process would be) blocks in PostgreSQL
    until the first releases the show's lock; then it gets it."""
    assert endpoints.database_url is not None
    url = endpoints.database_url
    show_id = uuid4()
    order: list[str] = []
    other_process = PostgresEventStore(url, pool_size=1)

    def second_writer() -> None:
        with other_process.show_lock(show_id):
            order.append("second")

    try:
        with ThreadPoolExecutor(1) as pool:
            with store.show_lock(show_id):
                waiting = pool.submit(second_writer)
                wait_until(
                    lambda: advisory_lock_sessions(url, show_id) == {True: 1, False: 1},
                    20,
                    "one session holding and one waiting for the show's advisory lock",
                )
                assert not waiting.done() and order == []  # it waits in PostgreSQL
                order.append("first")
            waiting.result(timeout=20)
        assert order == ["first", "second"]
        assert advisory_lock_sessions(url, show_id) == {}  # both released it
    finally:
        other_process.close()
