"""Erasure (docs/PRIVACY.md) with the real servers and workers: a customer who booked, paid
and gave a ticket away asks `DELETE /me`; afterwards their e-mail address and name can be read
nowhere: not in any table of the database (the raw event log and snapshots included), not in
the events as the application decodes them, not in `audit export`, not on Kafka after the
relay re-published everything; `audit verify` passes and the money records keep their amounts.
`GET /me/export` gives the person their data before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql

from audit.verify import verify
from domain.account import ERASED
from domain.booking import CONFIRMED
from infra.decoding import Decoder, read_rows
from infra.event_store import PostgresEventStore
from process_managers.integration_events import IntegrationEvent, topic_names
from tests.e2e.saga_support import VISA, SagaSystem, book, running_system, wait_until
from tests.faults.support import run_cli, topic_records
from ticketblitz.embedded import StackEndpoints
from ticketblitz.stack.smtp import Mailbox

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "erasure", read_models=True) as started:
        yield started


def auth(person: dict[str, str]) -> dict[str, str]:
    return {"Authorization": person["Authorization"]}


def a_person(system: SagaSystem) -> dict[str, str]:
    """A customer whose e-mail and name are unique to this test (what must be forgotten)."""
    unique = uuid4().hex[:12]
    email, name = f"erin-{unique}@example.com", f"Erin Erasable {unique}"
    r = system.api.http.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": name}
    )
    assert r.status_code == 201, r.text
    token = system.api.token_for(email, PASSWORD)
    return {
        "email": email,
        "name": name,
        "account_id": r.json()["account_id"],
        "Authorization": f"Bearer {token}",
    }


def leaks(database_url: str, needles: list[str]) -> list[str]:
    """Every table of the database (any schema) with a row that holds one of `needles`, in
    any column: text as text (any case), bytes (the event log, snapshots) as bytes."""
    found: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (schema, table),
            ).fetchall()
            for needle in needles:
                tests = [
                    sql.SQL("position(convert_to({}, 'UTF8') in {}) > 0").format(
                        sql.Literal(needle), sql.Identifier(column)
                    )
                    if kind == "bytea"
                    else sql.SQL("position({} in lower({}::text)) > 0").format(
                        sql.Literal(needle.lower()), sql.Identifier(column)
                    )
                    for column, kind in columns
                ]
                if not tests:
                    continue
                query = sql.SQL("SELECT count(*) FROM {}.{} WHERE {}").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.SQL(" OR ").join(tests)
                )
                row = conn.execute(query).fetchone()
                if row is not None and row[0]:
                    found.append(f"{schema}.{table}: {row[0]} rows hold {needle!r}")
    return found


def decoded_events_holding(database_url: str, needles: list[str]) -> list[str]:
    """The events, decoded as the application decodes them (with a key ring of its own), whose
    data holds one of `needles`."""
    store = PostgresEventStore(database_url, pool_size=1)
    try:
        decode = Decoder(store.app.mapper).event
        found: list[str] = []
        after = 0
        with store.connection() as conn:
            while rows := read_rows(conn, after, 1000):
                for row in rows:
                    text = repr(vars(decode(row))).lower()
                    found += [f"{row[0]} {row[3]}" for n in needles if n.lower() in text]
                after = rows[-1][0]
        return found
    finally:
        store.close()


def kafka_records(system: SagaSystem) -> dict[str, list[bytes]]:
    bootstrap = system.endpoints.kafka_bootstrap
    assert bootstrap is not None
    return {
        topic: [r.value for r in topic_records(bootstrap, topic)]
        for topic in topic_names(system.prefix).values()
    }


def bought_and_given(system: SagaSystem, erin: dict[str, str], friend: dict[str, str]) -> str:
    """Erin pays for two seats and gives one to a friend; her booking."""
    show_id = system.api.new_show(rows=1, seats_per_row=10)
    held = book(system.api, erin, show_id, seats=["A-1-1", "A-1-2"], payment_method=VISA)
    booking_id: str = held["booking_id"]
    system.wait_for_status(booking_id, {CONFIRMED}, timeout=40)
    r = system.api.http.get(
        f"/bookings/{booking_id}/tickets",
        params={"after": system.store.head_position()},
        headers=auth(erin),
    )
    assert r.status_code == 200, r.text
    second = r.json()["tickets"][1]
    r = system.api.http.post(
        f"/tickets/{second['ticket_id']}/transfer",
        json={"email": friend["email"]},
        headers=auth(erin),
    )
    assert r.status_code == 200, r.text
    return booking_id


def test_after_delete_me_nothing_personal_of_the_person_can_be_read_anywhere(
    system: SagaSystem, mailbox: Mailbox
):
    """Given a customer who paid for two seats and gave one to a friend, and was e-mailed;
    when they export their data, then erase themself; then their data was in the export, and
    afterwards their e-mail address and name are in no table, no decoded event, no line of
    `audit export` and no Kafka record after a full re-publication; their token and password
    open nothing; the log passes `audit verify`; the booking keeps its amount."""
    erin = a_person(system)
    friend = system.api.new_customer()
    needles = [erin["email"], erin["name"]]
    booking_id = bought_and_given(system, erin, friend)
    mailbox.wait_for(
        lambda m: m["To"] == erin["email"] and m["X-TicketBlitz-Event-Type"] == "booking.confirmed",
        timeout=40,
    )
    given = mailbox.wait_for(
        lambda m: (
            m["To"] == friend["email"] and m["X-TicketBlitz-Event-Type"] == "ticket.transferred"
        ),
        timeout=40,
    )
    assert f"{erin['name']} gave you a ticket" in given.get_content()

    def exported() -> dict[str, Any] | None:
        r = system.api.http.get("/me/export", headers=auth(erin))
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data if len(data["tickets"]) == 2 and data["emails_sent"] else None

    export = wait_until(exported, 30, "the export to hold the tickets and the e-mail sent")
    assert (export["account"]["email"], export["account"]["name"]) == (erin["email"], erin["name"])
    assert [b["booking_id"] for b in export["bookings"]] == [booking_id]
    assert export["bookings"][0]["amount_cents"] == 9000
    assert {e["event_type"] for e in export["emails_sent"]} >= {"booking.confirmed"}
    assert leaks(system.settings.database_url or "", needles)  # the scan sees them before

    refused = system.api.http.request(
        "DELETE", "/me", json={"password": "not my password"}, headers=auth(erin)
    )
    assert (refused.status_code, refused.json()["type"].rsplit("/", 1)[-1]) == (
        422,
        "wrong-password",
    )
    r = system.api.http.request("DELETE", "/me", json={"password": PASSWORD}, headers=auth(erin))

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "erased" and r.json()["account_id"] == erin["account_id"]
    assert system.api.http.get("/me", headers=auth(erin)).status_code == 401
    login = {"email": erin["email"], "password": PASSWORD}
    assert system.api.http.post("/auth/token", json=login).status_code == 401
    seen = system.api.http.get(
        f"/admin/accounts/{erin['account_id']}",
        params={"after": r.json()["position"]},
        headers=system.api.admin(),
    )
    assert seen.status_code == 200, seen.text
    assert (seen.json()["email"], seen.json()["name"], seen.json()["active"]) == (
        ERASED,
        ERASED,
        False,
    )

    database_url = system.settings.database_url or ""
    wait_until(lambda: not leaks(database_url, needles), 30, "the read models to forget")
    assert decoded_events_holding(database_url, needles) == []

    audit = run_cli(["audit", "export"], system.settings)
    assert audit.returncode == 0, audit.stderr
    assert "Erased" in audit.stdout and booking_id in audit.stdout
    assert all(n.lower() not in audit.stdout.lower() for n in needles)
    assert "$argon2" not in audit.stdout  # nobody's password hash, erased or not

    before = {topic: len(values) for topic, values in kafka_records(system).items()}
    refeed = run_cli(["relay", "refeed", "--from", "0"], system.settings)
    assert refeed.returncode == 0, refeed.stderr

    def republished() -> dict[str, list[bytes]] | None:
        found = kafka_records(system)
        return found if all(len(found[t]) >= 2 * n for t, n in before.items()) else None

    records = wait_until(republished, 90, "the relay to publish every event again")
    raw = b"\n".join(value for values in records.values() for value in values)
    assert all(n.encode() not in raw for n in needles)
    erins = [
        e.payload["customer"]
        for e in map(IntegrationEvent.from_json, (v for vs in records.values() for v in vs))
        if str(e.booking_id) == booking_id and "customer" in e.payload
    ]
    assert erins and all((c["email"], c["name"]) == ("", ERASED) for c in erins)

    report = verify(system.store, refund_grace=timedelta(minutes=15))
    assert report.violation_count == 0, [str(v) for v in report.violations]
    booking = system.booking(booking_id)
    assert (booking.status, booking.amount_cents) == (CONFIRMED, 9000)
    assert wait_until(lambda: not leaks(database_url, needles), 30, "nothing new to name her")


def test_an_admin_erases_an_account_and_a_second_erasure_changes_nothing(system: SagaSystem):
    """Given a customer; when an admin erases the account twice; then both answer 200, the
    account's token is refused, and the admin cannot erase themself."""
    person = a_person(system)
    admin = system.api.admin()

    first = system.api.http.delete(f"/admin/accounts/{person['account_id']}", headers=admin)
    again = system.api.http.delete(f"/admin/accounts/{person['account_id']}", headers=admin)

    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    assert system.api.http.get("/me", headers=auth(person)).status_code == 401
    renamed = system.api.http.patch("/me", json={"name": "Back"}, headers=auth(person))
    assert renamed.status_code == 401
    me = system.api.http.get("/me", headers=admin).json()["account_id"]
    own = system.api.http.delete(f"/admin/accounts/{me}", headers=admin)
    assert own.status_code == 409, own.text
    assert UUID(first.json()["account_id"]) == UUID(person["account_id"])
