"""`ticketblitz audit`: verify a real history, find what was tampered with and where, replay
streams, export the log. Each tampering happens on a copy of one sealed history, written
directly into PostgreSQL as an intruder with database access would."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from audit.export import exported, write_export
from audit.hash_chain import (
    CHAIN_TABLE,
    ChainBrokenError,
    chain_follower,
    runner_active,
    seal,
    wait_for_chain,
)
from audit.invariants import (
    CONFIRMED_PAYMENTS,
    GA_OVER_CAPACITY,
    REFUND_NOT_DUE,
    SEAT_TAKEN,
    VERSION_GAP,
)
from audit.replay import StreamNotFoundError, replay_stream
from audit.revenue import SalesReadModel
from audit.verify import CHANGED, DELETED, INSERTED, ROOT_MISMATCH, UNCHAINED, verify
from domain.booking import CANCELLED, CONFIRMED, EXPIRED, HELD, PAYMENT_REQUESTED, Booking
from domain.inventory import SeatInventory
from infra.decoding import Decoder, read_rows
from infra.event_store import PostgresEventStore
from tests.integration.audit_support import (
    GA_CAPACITY,
    History,
    container_on,
    new_database,
    position_of,
    run_cli,
    run_cli_process,
    sealed_history,
)
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server_url(endpoints: StackEndpoints) -> str:
    assert endpoints.database_url is not None
    return endpoints.database_url


@pytest.fixture(scope="module")
def history(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    with new_database(server_url) as url:
        with container_on(url, tmp_path_factory.mktemp("audit")) as container:
            built = sealed_history(container, url)
        yield built  # every connection to it is closed: it can serve as a template


@pytest.fixture
def copy(history: History, server_url: str) -> Iterator[str]:
    """A database of its own holding the sealed history, to tamper with."""
    with new_database(server_url, template=history.database_url) as url:
        yield url


@pytest.fixture
def store(copy: str) -> Iterator[PostgresEventStore]:
    opened = PostgresEventStore(copy, pool_size=2)
    yield opened
    opened.close()


def positions(report, rule: str) -> list[int]:
    return [v.position for v in report.violations if v.rule == rule]


# --- a clean history -----------------------------------------------------------------------


def test_a_history_with_payments_expiries_and_refunds_verifies_clean(history: History):
    """Given bookings confirmed, expired, cancelled and refunded, paid late and refunded,
    declined, and a notification id left unused by a refused append;
    when the whole log is verified against the root sealed at its head;
    then no rule is broken, the root is proved, and the revenue equals the sales read model."""
    assert history.root is not None
    result = run_cli_process(history.database_url, "verify", "--root", str(history.root))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"verified {history.head - 1:,} events" in result.stdout  # one id is the gap
    assert f"root {history.root}: proved" in result.stdout
    assert f"sales read model at position {history.head:,} (1 shows)" in result.stdout
    assert "events/s" in result.stdout
    assert "violations: 0" in result.stdout


def test_the_audit_decoder_reads_every_record_as_the_applications_mapper_does(
    store: PostgresEventStore,
):
    with store.connection() as conn:
        rows = read_rows(conn, 0, 10_000)
    mapper = store.app.mapper
    decoded = Decoder(mapper)
    for row in rows:
        mine = decoded.event(row)
        theirs = mapper.to_domain_event(StoredEvent(row[1], row[2], row[3], row[4]))
        assert type(mine) is type(theirs)
        assert vars(mine) == vars(theirs)


# --- rules broken by hand-crafted events -----------------------------------------------------


def test_a_hand_crafted_double_sale_is_reported_at_its_position(
    history: History, store: PostgresEventStore, copy: str
):
    """Given seat A-1-1 sold to the confirmed booking;
    when events hold and sell it for another booking, bypassing the rules;
    then verify names the seat, both bookings, the inventory stream and the position."""
    intruder = uuid4()
    inventory = store.get(history.inventory_id, SeatInventory)
    inventory.trigger_event(  # the event itself: no check of what is free
        SeatInventory.SeatsHeld,
        booking_id=intruder,
        customer_id=uuid4(),
        seats=["A-1-1"],
        general={},
        until=datetime.now(UTC) + timedelta(minutes=10),
    )
    held_at = store.save(inventory)
    inventory._seats_sold(booking_id=intruder)
    store.save(inventory)

    report = verify(store, revenue=SalesReadModel())

    assert [(v.position, v.stream_id, v.rule) for v in report.violations] == [
        (held_at, history.inventory_id, SEAT_TAKEN)
    ]
    message = report.violations[0].message
    assert "A-1-1" in message
    assert f"sold to booking {history.bookings['confirmed']}" in message
    cli = run_cli(copy, "verify")
    assert cli.returncode == 1
    assert f"position {held_at}  stream {history.inventory_id}  {SEAT_TAKEN}" in cli.stdout


def test_general_admission_over_capacity_is_reported(history: History, store: PostgresEventStore):
    inventory = store.get(history.inventory_id, SeatInventory)
    assert inventory.general["GA"].taken == 3
    inventory.trigger_event(
        SeatInventory.SeatsHeld,
        booking_id=uuid4(),
        customer_id=uuid4(),
        seats=[],
        general={"GA": GA_CAPACITY - 3 + 1},
        until=datetime.now(UTC),
    )
    position = store.save(inventory)

    report = verify(store)

    assert positions(report, GA_OVER_CAPACITY) == [position]
    assert report.violation_count == 1


def test_payment_rules_broken_by_hand_crafted_events_are_reported(
    history: History, store: PostgresEventStore
):
    """A booking confirmed without any payment, a second payment on a confirmed booking, and a
    refund of a booking that was never cancelled: each at its own position."""
    expired = store.get(history.bookings["expired"], Booking)
    expired._confirmed()  # confirmed without a payment
    unpaid_confirmation = store.save(expired)
    confirmed = store.get(history.bookings["confirmed"], Booking)
    confirmed._payment_succeeded(payment_intent_id="pi_again", amount_cents=9000)
    second_payment = store.save(confirmed)
    confirmed = store.get(history.bookings["confirmed"], Booking)
    confirmed._refunded(refund_id="re_forged", amount_cents=9000)
    refund_of_confirmed = store.save(confirmed)

    report = verify(store)

    assert positions(report, CONFIRMED_PAYMENTS) == [unpaid_confirmation, second_payment]
    assert positions(report, REFUND_NOT_DUE) == [refund_of_confirmed]


# --- tampering, written directly into PostgreSQL --------------------------------------------


def test_an_updated_row_is_located(history: History, store: PostgresEventStore, copy: str):
    """Given the sealed root; when the amount of a payment is edited in place;
    then verify --root locates the edited record and the root is not proved."""
    assert history.root is not None
    paid = position_of(copy, history.bookings["confirmed"], "PaymentSucceeded")
    with psycopg.connect(copy) as conn:
        conn.execute(
            "UPDATE ticketblitz_events SET state = "
            "convert_to(replace(convert_from(state, 'UTF8'), '\"amount_cents\":9000', "
            "'\"amount_cents\":900'), 'UTF8') "
            "WHERE notification_id = %s",
            (paid,),
        )

    report = verify(store, root=history.root, revenue=SalesReadModel())

    assert positions(report, CHANGED) == [paid]
    assert positions(report, ROOT_MISMATCH) == [history.root.position]
    cli = run_cli(copy, "verify", "--root", str(history.root))
    assert cli.returncode == 1
    assert f"position {paid}  stream {history.bookings['confirmed']}  {CHANGED}" in cli.stdout
    assert "NOT proved" in cli.stdout


def test_a_deleted_row_is_located(history: History, store: PostgresEventStore, copy: str):
    assert history.root is not None
    requested = position_of(copy, history.bookings["confirmed"], "PaymentRequested")
    with psycopg.connect(copy) as conn:
        conn.execute("DELETE FROM ticketblitz_events WHERE notification_id = %s", (requested,))

    report = verify(store, root=history.root)

    assert positions(report, DELETED) == [requested]
    # The stream itself now skips a version, right after the hole.
    gap = [v for v in report.violations if v.rule == VERSION_GAP]
    assert [v.stream_id for v in gap] == [history.bookings["confirmed"]]
    assert gap[0].position > requested


def test_inserted_rows_are_located(history: History, store: PostgresEventStore, copy: str):
    """Given the sealed root (and an id the store left unused before it);
    when one row is inserted into that unused id and another appended with a fresh id;
    then verify --root reports each one at its position, and the first breaks the root."""
    assert history.root is not None
    with psycopg.connect(copy) as conn:
        template = conn.execute(
            "SELECT originator_version, topic, state FROM ticketblitz_events "
            "WHERE originator_id = %s ORDER BY originator_version DESC LIMIT 1",
            (history.bookings["expired"],),
        ).fetchone()
        assert template is not None
        version, topic, state = template
        forged = (uuid4(), version, topic, state)
        conn.execute(
            "INSERT INTO ticketblitz_events (notification_id, originator_id, "
            "originator_version, topic, state) VALUES (%s, %s, %s, %s, %s)",
            (history.gap, *forged),
        )
        appended = conn.execute(
            "INSERT INTO ticketblitz_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s) RETURNING notification_id",
            (uuid4(), version, topic, state),
        ).fetchone()
        assert appended is not None

    report = verify(store, root=history.root)

    assert positions(report, INSERTED) == [history.gap]
    assert positions(report, UNCHAINED) == [appended[0]]
    assert positions(report, ROOT_MISMATCH) == [history.root.position]


def test_an_edited_chain_stops_the_chain_follower(history: History, store: PostgresEventStore):
    """The chain table is evidence too: the follower refuses to extend one that was cut."""
    with store.connection() as conn:
        conn.execute(f"DELETE FROM {CHAIN_TABLE} WHERE position = %s", (history.head,))

    with pytest.raises(ChainBrokenError, match="chain follower is at"):
        _place_a_hold_and_seal(history, store)


def _place_a_hold_and_seal(history: History, store: PostgresEventStore) -> None:
    booking = Booking(
        booking_id=uuid4(),
        show_id=history.show_id,
        customer_id=uuid4(),
        seats=[],
        general={},
        amount_cents=0,
        currency="EUR",
        hold_expires_at=datetime.now(UTC),
        payment_method=None,
    )
    store.save(booking)
    seal(store)


def test_the_chain_follows_the_log_and_old_roots_stay_provable(
    history: History, store: PostgresEventStore
):
    """Given the root sealed earlier and the chain follower running, as the workers run it;
    when more events are appended;
    then verify --root waits for the follower instead of reporting them unchained, and a new
    seal covers them: both roots are proved."""
    assert history.root is not None
    stop = threading.Event()
    runner = threading.Thread(target=chain_follower(store).run, args=(stop,), daemon=True)
    runner.start()
    try:
        inventory = store.get(history.inventory_id, SeatInventory)
        inventory.release(history.bookings["general"], "organiser's decision")
        last = store.save(inventory)
        with store.connection() as conn:
            assert wait_for_chain(conn, last, timeout=60) == last
            assert runner_active(conn)
        inventory.release(history.bookings["confirmed"], "organiser's decision")
        store.save(inventory)  # and verify at once: the follower may not have chained it yet
        after_old_root = verify(store, root=history.root)
        newer = seal(store)  # alongside the running follower
    finally:
        stop.set()
        runner.join(timeout=10)

    assert after_old_root.ok, after_old_root.violations
    assert after_old_root.unchained == 0
    assert newer.position == store.head_position()
    assert verify(store, root=newer).ok


# --- schema evolution -----------------------------------------------------------------------


def test_a_version_1_seats_released_record_replays(history: History, store: PostgresEventStore):
    """Given a hold, and then a SeatsReleased stored as the code before version 2 wrote it
    (without `seats` and `general`, without a class version);
    when the inventory is loaded, replayed and verified;
    then the seats are free again and the old event reads in its new shape."""
    held = store.get(history.inventory_id, SeatInventory)
    booking = uuid4()
    held.hold(booking, uuid4(), ["A-5-4"], {"GA": 1}, until=datetime.now(UTC))
    store.save(held)
    assert not held.is_free("A-5-4")
    v1_state = json.dumps(
        {
            "timestamp": {"_type_": "datetime_iso", "_data_": datetime.now(UTC).isoformat()},
            "booking_id": {"_type_": "uuid_hex", "_data_": booking.hex},
            "reason": "hold expired",
        }
    ).encode()
    with store.connection() as conn:
        inserted = conn.execute(
            "INSERT INTO ticketblitz_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s) RETURNING notification_id",
            (
                history.inventory_id,
                held.version + 1,
                "domain.inventory:SeatInventory.SeatsReleased",
                v1_state,
            ),
        ).fetchone()
    assert inserted is not None
    position = inserted[0]

    inventory = store.get(history.inventory_id, SeatInventory)
    replayed = replay_stream(store, history.inventory_id)
    report = verify(store)

    assert inventory.is_free("A-5-4")
    assert inventory.general["GA"].taken == held.general["GA"].taken - 1
    assert booking.hex not in inventory.claims
    assert replayed.state is not None and "A-5-4" not in replayed.state["holder"]
    old = replayed.events[-1]
    assert (old.position, old.type) == (position, "SeatInventory.SeatsReleased")
    assert old.payload == {
        "booking_id": str(booking),
        "reason": "hold expired",
        "seats": None,
        "general": None,
        "released_at": None,  # nor when, before version 3
    }
    assert report.ok, report.violations


# --- replay and export ----------------------------------------------------------------------


def test_replay_rebuilds_a_booking_at_each_of_its_versions(history: History, copy: str):
    store = PostgresEventStore(copy, pool_size=1)
    try:
        booking = history.bookings["refunded"]
        statuses = [
            replay_stream(store, booking, version=v).state["status"]  # type: ignore[index]
            for v in range(1, 7)
        ]
        whole = replay_stream(store, booking)
        with pytest.raises(StreamNotFoundError):
            replay_stream(store, uuid4())
    finally:
        store.close()

    assert statuses == [HELD, PAYMENT_REQUESTED, "paid", CONFIRMED, CANCELLED, "refunded"]
    assert [e.type for e in whole.events] == [
        "Booking.Placed",
        "Booking.PaymentRequested",
        "Booking.PaymentSucceeded",
        "Booking.Confirmed",
        "Booking.Cancelled",
        "Booking.Refunded",
    ]
    assert whole.events[2].payload == {
        "payment_intent_id": f"pi_{booking.hex[:12]}",
        "amount_cents": 4500,
    }


def test_replay_on_the_command_line(history: History, copy: str):
    booking = history.bookings["expired"]
    before_expiry = replay_at_json(copy, booking, "--version", "1")
    as_of_expiry = replay_at_json(copy, booking, "--as-of", datetime.now(UTC).isoformat())
    unknown = run_cli(copy, "replay", str(uuid4()))
    naive = run_cli(copy, "replay", str(booking), "--as-of", "2026-01-01T10:00:00")
    human = run_cli(copy, "replay", str(booking))

    assert before_expiry["state"]["status"] == HELD
    assert before_expiry["later_events"] == 1
    assert as_of_expiry["state"]["status"] == EXPIRED
    assert [e["type"] for e in as_of_expiry["events"]] == ["Booking.Placed", "Booking.Expired"]
    for failed in (unknown, naive):
        assert failed.returncode == 2
        assert failed.stderr.count("\n") == 1 and "ticketblitz: error:" in failed.stderr
    assert "needs a time zone" in naive.stderr
    assert human.returncode == 0 and "Booking.Expired" in human.stdout


def test_a_shows_replay_names_its_other_streams_and_replays_them_by_the_shows_id(
    history: History, copy: str
):
    show = replay_at_json(copy, history.show_id)
    inventory = replay_at_json(copy, history.show_id, "--part", "inventory")
    wrong = run_cli(copy, "replay", str(history.show_id), "--part", "seats")
    human = run_cli(copy, "replay", str(history.show_id))

    assert show["aggregate"] == "Show"
    assert show["related_streams"]["inventory"] == str(history.inventory_id)
    assert inventory["stream_id"] == str(history.inventory_id)
    assert inventory["aggregate"] == "SeatInventory"
    assert "SeatInventory.SeatsHeld" in {e["type"] for e in inventory["events"]}
    assert wrong.returncode == 2 and "--part is one of inventory" in wrong.stderr
    assert "--part inventory" in human.stdout and str(history.inventory_id) in human.stdout


def replay_at_json(database_url: str, stream: UUID, *args: str) -> dict:
    result = run_cli(database_url, "replay", str(stream), "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_export_streams_a_range_of_positions(history: History, copy: str, tmp_path: Path):
    store = PostgresEventStore(copy, pool_size=1)
    try:
        as_csv = io.StringIO()
        count = write_export(exported(store, 3, 8), as_csv, "csv")
        everything = list(exported(store))
    finally:
        store.close()
    jsonl = run_cli(copy, "export", "--from", "1", "--to", "4", "--format", "jsonl")

    rows = list(csv.DictReader(io.StringIO(as_csv.getvalue())))
    assert count == 6 and [int(r["position"]) for r in rows] == [3, 4, 5, 6, 7, 8]
    assert [(r["stream_id"], r["type"]) for r in rows] == [
        (e["stream_id"], e["type"]) for e in everything[2:8]
    ]
    assert [json.loads(r["payload"]) for r in rows] == [e["payload"] for e in everything[2:8]]
    assert len(everything) == history.head - 1  # all but the unused id
    assert {"Show.Scheduled", "Booking.Refunded"} <= {e["type"] for e in everything}
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert jsonl.returncode == 0
    assert lines == everything[:4]
