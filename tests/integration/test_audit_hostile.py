"""`audit verify` against hostile histories (issue 12): a log written by the code from before
the fixes (tests/fixtures/old_hostile_log.jsonl, made by make_old_hostile_log.py) reports the
forged payments, the hoarder, the sales after a cancellation or the show's start and the
unrefunded bookings of a cancelled show; logs written by today's code through its API report
nothing, ordinary and attacked alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from audit.invariants import (
    CANCELLED_SHOW_NOT_REFUNDED,
    CONFIRMED_AFTER_CANCEL,
    CONFIRMED_AFTER_START,
    CONFIRMED_UNMATCHED,
    OVER_CUSTOMER_CAP,
)
from audit.verify import VerifyReport, verify
from domain.booking import CANCELLED, CONFIRMED, EXPIRED, FINAL, PAYMENT_REQUESTED, REFUNDED
from domain.ids import inventory_id_for
from infra.event_store import PostgresEventStore
from tests.e2e.conftest import Api
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    SagaSystem,
    book,
    in_days,
    running_system,
    show_starting,
    signed,
    stripe_client,
    wait_until,
)
from tests.integration.audit_support import new_database, run_cli
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures"
OLD_LOG = FIXTURES / "old_hostile_log.jsonl"
IDS: dict[str, str] = json.loads((FIXTURES / "old_hostile_log.ids.json").read_text())
LONG_AFTER = datetime.fromisoformat("2100-01-01T00:00:00+00:00")


@pytest.fixture(scope="module")
def server_url(endpoints: StackEndpoints) -> str:
    assert endpoints.database_url is not None
    return endpoints.database_url


def load_records(database_url: str, path: Path) -> list[dict[str, Any]]:
    """The fixture's records, inserted as they were stored (same positions, same bytes)."""
    PostgresEventStore(database_url, pool_size=1).close()  # creates the events table
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with psycopg.connect(database_url) as conn:
        copy_sql = (
            "COPY ticketblitz_events (notification_id, originator_id, originator_version, "
            "topic, state) FROM STDIN"
        )
        with conn.cursor().copy(copy_sql) as copy:
            for r in records:
                state = r["state"].encode("utf-8")
                copy.write_row((r["position"], r["originator_id"], r["version"], r["topic"], state))
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('ticketblitz_events', 'notification_id'), "
            "max(notification_id)) FROM ticketblitz_events"
        )
    return records


@pytest.fixture(scope="module")
def old_log(server_url: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with new_database(server_url) as url:
        yield url, load_records(url, OLD_LOG)


@pytest.fixture
def old_store(old_log: tuple[str, list[dict[str, Any]]]) -> Iterator[PostgresEventStore]:
    store = PostgresEventStore(old_log[0], pool_size=2)
    yield store
    store.close()


def found(report: VerifyReport, rule: str) -> dict[UUID | None, list[str]]:
    by_stream: dict[UUID | None, list[str]] = {}
    for v in report.violations:
        if v.rule == rule:
            by_stream.setdefault(v.stream_id, []).append(v.message)
    return by_stream


def ids(*names: str) -> set[UUID]:
    return {UUID(IDS[name]) for name in names}


def described(report: VerifyReport) -> str:
    return "\n".join(str(v) for v in [*report.violations, *report.pending])


# --- the old code's log ----------------------------------------------------------------


def test_the_old_codes_hostile_log_breaks_the_new_rules(old_store: PostgresEventStore):
    """Given the log the code before issue 12 wrote under attack;
    when it is verified long after it was written;
    then each attack is a violation naming its booking (or customer and show), and the
    legitimate bookings beside them are not."""
    report = verify(old_store, now=LONG_AFTER)

    forged = found(report, CONFIRMED_UNMATCHED)
    assert set(forged) == ids("booking:forged-1-cent", "booking:forged-50-cents"), described(report)
    [one_cent] = forged[UUID(IDS["booking:forged-1-cent"])]
    assert "pi_made_up_by_the_webhook" in one_cent and "1 cents of 10000" in one_cent
    [fifty] = forged[UUID(IDS["booking:forged-50-cents"])]
    assert "pi_the_attackers_own_intent" in fifty and "50 cents of 20000" in fifty

    hostile_inventory = inventory_id_for(UUID(IDS["show:hostile"]))
    over_cap = found(report, OVER_CUSTOMER_CAP)
    assert set(over_cap) == {hostile_inventory}, described(report)
    messages = over_cap[hostile_inventory]
    assert len(messages) == 4  # the 2nd to 5th hold of 10 each
    for n, message in zip(range(2, 6), messages, strict=True):
        assert f"customer {IDS['customer:hoarder']} holds or owns {n * 10} tickets" in message
        assert f"booking {IDS['booking:hoarder-' + str(n)]}" in message
        assert "cap of 10" in message

    assert set(found(report, CONFIRMED_AFTER_CANCEL)) == ids("booking:paid-after-cancel")
    assert set(found(report, CONFIRMED_AFTER_START)) == ids("booking:sold-after-start")
    assert set(found(report, CANCELLED_SHOW_NOT_REFUNDED)) == ids(
        "booking:paid-before-cancel", "booking:paid-after-cancel"
    )
    rules = {v.rule for v in report.violations}
    assert rules == {
        CONFIRMED_UNMATCHED,
        OVER_CUSTOMER_CAP,
        CONFIRMED_AFTER_CANCEL,
        CONFIRMED_AFTER_START,
        CANCELLED_SHOW_NOT_REFUNDED,
    }, described(report)
    assert report.violation_count == 2 + 4 + 1 + 1 + 2
    assert report.pending_count == 0


def test_refunds_of_a_cancelled_show_are_pending_within_the_grace(
    old_store: PostgresEventStore, old_log: tuple[str, list[dict[str, Any]]]
):
    """Given the same log, verified one minute after the show was cancelled;
    then its unrefunded bookings are pending (the saga may be refunding them), not violations,
    and with no grace at all they are violations."""
    [cancelled] = [r for r in old_log[1] if r["topic"].endswith("Show.Cancelled")]
    stamp = json.loads(cancelled["state"])["timestamp"]["_data_"]
    minute_later = datetime.fromisoformat(stamp) + timedelta(minutes=1)

    graced = verify(old_store, now=minute_later, refund_grace=timedelta(minutes=15))
    strict = verify(old_store, now=minute_later, refund_grace=timedelta(0))

    assert {p.stream_id for p in graced.pending} == ids(
        "booking:paid-before-cancel", "booking:paid-after-cancel"
    )
    assert all(p.rule == CANCELLED_SHOW_NOT_REFUNDED for p in graced.pending)
    assert not found(graced, CANCELLED_SHOW_NOT_REFUNDED)
    assert graced.violation_count == strict.violation_count - 2
    assert strict.pending_count == 0


def test_the_cli_reports_the_old_log_and_exits_1(old_log: tuple[str, list[dict[str, Any]]]):
    result = run_cli(old_log[0], "verify", "--refund-grace-minutes", "0")
    print(result.stdout)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"verified {len(old_log[1])} events" in result.stdout
    assert "violations: 10" in result.stdout, result.stdout
    assert "refunds pending (due for less than 0 min): 0" in result.stdout
    for name in ("booking:forged-1-cent", "booking:forged-50-cents", "customer:hoarder"):
        assert IDS[name] in result.stdout
    assert CONFIRMED_UNMATCHED in result.stdout and OVER_CUSTOMER_CAP in result.stdout


# --- logs written by today's code ------------------------------------------------------


@pytest.fixture
def system(endpoints: StackEndpoints, tmp_path: Path) -> Iterator[SagaSystem]:
    """App servers and workers on a database of their own: a log with nothing else in it."""
    with running_system(endpoints, tmp_path) as started:
        yield started


def auth(customer: dict[str, str]) -> dict[str, str]:
    return {"Authorization": customer["Authorization"]}


def free_show(api: Api) -> str:
    body = {
        "title": f"Open rehearsal {uuid4().hex[:6]}",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": in_days(30).isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "GUEST", "price_cents": 0}],
        "sections": [{"code": "GA", "kind": "general", "tier": "GUEST", "capacity": 50}],
    }
    return api.publish_show(body)


def settled_report(system: SagaSystem, timeout: float = 60) -> VerifyReport:
    """`verify` once nothing is pending any more (refunds in flight have landed); after the
    deadline, the last report, pending and all, for the assertions to show."""
    last: list[VerifyReport] = []

    def settled() -> VerifyReport | None:
        last[:] = [verify(system.store)]
        return last[0] if last[0].pending_count == 0 else None

    try:
        return wait_until(settled, timeout, "the refunds due to be recorded")
    except AssertionError:
        return last[0]


def assert_clean(system: SagaSystem, report: VerifyReport) -> None:
    assert report.violation_count == 0, described(report)
    assert report.pending_count == 0, described(report)
    database_url = system.settings.database_url
    assert database_url is not None
    result = run_cli(database_url, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "violations: 0" in result.stdout


def test_a_new_log_of_ordinary_bookings_verifies_clean(system: SagaSystem):
    """Given bookings through the API: paid at booking, paid later, free, cancelled once
    confirmed and refunded, expired unpaid, declined;
    then `audit verify` finds nothing."""
    api = system.api
    show_id = show_starting(api, in_days(30), seats=10, rows=2)
    fans = [api.new_customer() for _ in range(6)]
    at_once = book(api, fans[0], show_id, seats=["A-1-1", "A-1-2"], payment_method=VISA)
    later = book(api, fans[1], show_id, quantity=2)
    refunded = book(api, fans[2], show_id, seats=["A-2-1"], payment_method=VISA)
    declined = book(api, fans[3], show_id, seats=["A-2-2"], payment_method=DECLINED)
    expired = book(system.short_hold_api, fans[4], show_id, seats=["A-2-3"])
    free = book(api, fans[5], free_show(api), section="GA", quantity=3)

    system.wait_for_status(later["booking_id"], {PAYMENT_REQUESTED}, timeout=15)
    paid = api.http.post(
        f"/bookings/{later['booking_id']}/pay", json={"payment_method": VISA}, headers=auth(fans[1])
    )
    assert paid.status_code == 200, paid.text
    system.wait_for_status(refunded["booking_id"], {CONFIRMED}, timeout=15)
    cancel = api.http.post(f"/bookings/{refunded['booking_id']}/cancel", headers=auth(fans[2]))
    assert cancel.status_code == 202, cancel.text
    expected = {
        at_once["booking_id"]: CONFIRMED,
        later["booking_id"]: CONFIRMED,
        refunded["booking_id"]: REFUNDED,
        declined["booking_id"]: CANCELLED,
        expired["booking_id"]: EXPIRED,
        free["booking_id"]: CONFIRMED,
    }
    for booking_id, status in expected.items():
        assert system.wait_for_status(booking_id, {status}, timeout=30).status == status
    assert system.booking(free["booking_id"]).paid_cents == 0

    report = settled_report(system)

    assert report.mismatches == 0
    assert_clean(system, report)


def settled_unsold(system: SagaSystem, booking_id: str) -> bool:
    """Ended without being sold, and whatever was paid given back."""
    booking = system.booking(booking_id)
    return booking.status in FINAL - {CONFIRMED} and booking.paid_cents == booking.refunded_cents


def forged_webhook(booking_id: str, intent_id: str, cents: int) -> bytes:
    """A `payment_intent.succeeded` as anyone holding the signing secret could write it."""
    intent = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": cents,
        "amount_received": cents,
        "currency": "eur",
        "status": "succeeded",
        "metadata": {"booking_id": booking_id},
    }
    event = {
        "id": f"evt_{uuid4().hex[:24]}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": intent},
    }
    return json.dumps(event).encode()


def test_a_new_log_written_under_the_same_attacks_verifies_clean(system: SagaSystem):
    """Given today's code attacked as the old one was: a signed webhook with a made-up intent
    of 1 cent, a real 50-cent intent naming someone's booking, one customer asking for 30
    tickets 10 at a time, a show cancelled with a booking paid before and one held before and
    paid after;
    then no booking is confirmed by the wrong money, the refunds due land, and `audit verify`
    finds no violation and shows the 50-cent payment as a mismatch."""
    api = system.api
    show_id = show_starting(api, in_days(30), seats=10, rows=5)
    victims = [api.new_customer() for _ in range(2)]
    forged = book(api, victims[0], show_id, seats=["A-1-1"])
    cheap = book(api, victims[1], show_id, seats=["A-1-2", "A-1-3"])
    for held in (forged, cheap):
        system.wait_for_status(held["booking_id"], {PAYMENT_REQUESTED}, timeout=15)

    body = forged_webhook(forged["booking_id"], "pi_made_up_by_the_webhook", 1)
    api.http.post(
        "/payments/stripe/webhook",
        content=body,
        headers={"Stripe-Signature": signed(body), "content-type": "application/json"},
    )
    client = stripe_client(system.endpoints)
    attackers = client.v1.payment_intents.create(
        params={"amount": 50, "currency": "eur", "metadata": {"booking_id": cheap["booking_id"]}}
    )
    client.v1.payment_intents.update(attackers.id, params={"payment_method": VISA})
    client.v1.payment_intents.confirm(attackers.id)

    def payment_recorded() -> bool:  # the emulator's webhook for it has been handled
        booking = system.booking(cheap["booking_id"])
        return booking.status == CONFIRMED or attackers.id in booking.mismatched_payments

    wait_until(payment_recorded, 30, f"the 50-cent payment {attackers.id} to be recorded")

    hoarder = api.new_customer()
    for _ in range(3):
        api.http.post("/bookings", json={"show_id": show_id, "quantity": 10}, headers=auth(hoarder))

    doomed = show_starting(api, in_days(30))
    fans = [api.new_customer() for _ in range(2)]
    paid_before = book(api, fans[0], doomed, seats=["A-1-1"], payment_method=VISA)
    held_before = book(api, fans[1], doomed, seats=["A-1-2"])
    system.wait_for_status(paid_before["booking_id"], {CONFIRMED}, timeout=15)
    system.wait_for_status(held_before["booking_id"], {PAYMENT_REQUESTED}, timeout=15)
    cancelled = api.http.post(f"/shows/{doomed}/cancel", headers=api.admin())
    assert cancelled.status_code == 200, cancelled.text
    api.http.post(
        f"/bookings/{held_before['booking_id']}/pay",
        json={"payment_method": VISA},
        headers=auth(fans[1]),
    )

    report = settled_report(system)  # once the refunds due have landed

    assert_clean(system, report)
    assert report.mismatches >= 1  # the 50-cent payment, shown and refunded
    assert attackers.id in system.booking(cheap["booking_id"]).mismatch_refund_ids
    for held in (forged, cheap):
        assert system.booking(held["booking_id"]).status != CONFIRMED
    for held in (paid_before, held_before):
        assert settled_unsold(system, held["booking_id"]), system.booking(held["booking_id"])
