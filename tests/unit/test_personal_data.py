"""Personal data out of the permanent log (docs/PRIVACY.md): an account is erased in the
domain; the application seals e-mails, names and password hashes with the person's key, so the
stored bytes never hold them, and once the key is destroyed they read as placeholders. Uses
the library's in-memory persistence and an in-memory key ring: no servers."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from domain.account import CUSTOMER, ERASED, Account
from domain.door import DoorList
from domain.ids import ticket_id_for
from infra.event_store import TicketBlitz
from infra.personal_data import MemoryKeyRing, seal_people, unseal_people
from tests.unit.factories import event_names, new_events

IN_MEMORY = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
EMAIL = "erin.erasable@example.com"
NAME = "Erin Erasable"
HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"


class BoxOffice(TicketBlitz):
    name = "PrivacyBoxOffice"


class SnapshottingBoxOffice(TicketBlitz):
    name = "PrivacySnapshottingBoxOffice"
    is_snapshotting_enabled = True


def stored_events(app: TicketBlitz, aggregate_id: UUID) -> list[StoredEvent]:
    return list(app.recorder.select_events(aggregate_id))


def everything_stored(app: TicketBlitz, aggregate_id: UUID) -> bytes:
    events = b"".join(e.state for e in stored_events(app, aggregate_id))
    snapshots = app.snapshots
    if snapshots is None:
        return events
    return events + b"".join(s.state for s in snapshots.recorder.select_events(aggregate_id))


def an_account(name: str = NAME) -> Account:
    return Account(email=EMAIL, name=name, password_hash=HASH, role=CUSTOMER)


# --- the domain -----------------------------------------------------------------------------


def test_erasing_deactivates_then_forgets_the_e_mail_name_and_password_hash():
    account = an_account()
    new_events(account)
    generation = account.session_generation

    account.erase()

    assert event_names(new_events(account)) == ["Deactivated", "Erased"]
    assert (account.email, account.name, account.password_hash) == ("", ERASED, "")
    assert account.erased and not account.active
    assert not account.accepts_session(generation)


def test_erasing_an_inactive_account_records_only_the_erasure_and_ends_its_sessions():
    account = an_account()
    account.deactivate(by=uuid4())
    new_events(account)
    generation = account.session_generation

    account.erase()

    assert event_names(new_events(account)) == ["Erased"]
    assert account.session_generation == generation + 1


def test_erasing_twice_records_nothing_the_second_time():
    account = an_account()
    account.erase()
    new_events(account)

    account.erase()

    assert new_events(account) == []


# --- the store: sealed fields ----------------------------------------------------------------


def test_the_stored_account_events_hold_no_e_mail_name_or_password_hash():
    app = BoxOffice(env=IN_MEMORY)
    account = an_account()
    account.rename("Erin E.")
    app.save(account)

    stored = everything_stored(app, account.id)
    loaded: Account = app.repository.get(account.id)

    for secret in (EMAIL, NAME, "Erin E.", HASH, b"argon2id".decode()):
        assert secret.encode() not in stored
    assert (loaded.email, loaded.name, loaded.password_hash) == (EMAIL, "Erin E.", HASH)


def test_once_the_key_is_destroyed_the_stored_events_read_as_erased():
    app = BoxOffice(env=IN_MEMORY)
    account = an_account()
    app.save(account)
    before = everything_stored(app, account.id)

    assert app.keys.destroy(account.id)
    loaded: Account = app.repository.get(account.id)

    assert everything_stored(app, account.id) == before  # nothing rewritten: the log stays
    assert (loaded.email, loaded.name, loaded.password_hash) == ("", ERASED, "")


def test_what_is_written_about_an_erased_person_is_unreadable_at_once():
    app = BoxOffice(env=IN_MEMORY)
    account = an_account()
    app.save(account)
    app.keys.destroy(account.id)

    account.rename("Someone New")
    app.save(account)

    loaded: Account = app.repository.get(account.id)
    assert loaded.name == ERASED


def test_an_account_event_stored_in_plain_text_still_loads():
    app = BoxOffice(env=IN_MEMORY)
    old = StoredEvent(
        uuid4(),
        1,
        "domain.account:Account.Registered",
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-05T14:34:38+00:00"},'
        b'"originator_topic":"domain.account:Account","email":"old@example.com",'
        b'"name":"Old","password_hash":"h","role":"customer"}',
    )

    event = app.mapper.to_domain_event(old)

    assert (event.email, event.name, event.password_hash) == (  # type: ignore[attr-defined]
        "old@example.com",
        "Old",
        "h",
    )


def test_ticket_holders_names_are_sealed_in_events_and_snapshots_for_each_holder():
    app = SnapshottingBoxOffice(env=IN_MEMORY)
    door = DoorList(show_id=uuid4())
    fan, friend = uuid4(), uuid4()
    booking = uuid4()
    door.issue(booking, fan, NAME, ["A-1-1", "A-1-2"], {})
    door.transfer(ticket_id_for(booking, 1), friend, "Grace Friend")
    app.save(door)
    app.take_snapshot(door.id)

    stored = everything_stored(app, door.id)
    assert NAME.encode() not in stored and b"Grace Friend" not in stored

    app.keys.destroy(fan)
    reloaded: DoorList = app.repository.get(door.id)  # from the snapshot
    replayed = [app.mapper.to_domain_event(e) for e in stored_events(app, door.id)]

    names = [t.holder_name for t in reloaded.tickets_of(booking)]
    assert names == [ERASED, ERASED, "Grace Friend"]
    issued = next(e for e in replayed if type(e).__name__ == "TicketsIssued")
    assert [t["holder_name"] for t in issued.tickets] == [ERASED, ERASED]  # type: ignore[attr-defined]


# --- integration events ----------------------------------------------------------------------


@pytest.fixture
def ring() -> MemoryKeyRing:
    return MemoryKeyRing()


def test_people_in_an_integration_payload_travel_sealed_and_open_with_their_key(
    ring: MemoryKeyRing,
):
    person = uuid4()
    payload = {"customer": {"id": str(person), "email": EMAIL, "name": NAME}, "seats": ["A-1-1"]}

    sealed = seal_people(payload, ring)

    assert EMAIL not in str(sealed) and NAME not in str(sealed)
    assert sealed["seats"] == ["A-1-1"]
    assert unseal_people(sealed, ring) == payload


def test_an_erased_persons_integration_payload_opens_to_no_address(ring: MemoryKeyRing):
    person = uuid4()
    payload = {"holder": {"id": str(person), "email": EMAIL, "name": NAME, "registered": True}}
    sealed = seal_people(payload, ring)

    ring.destroy(person)

    opened = unseal_people(sealed, ring)
    assert opened["holder"] == {"id": str(person), "email": "", "name": ERASED, "registered": True}
