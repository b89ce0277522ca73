"""Account: one per e-mail address, whatever its case; one role at a time, changed by an admin;
deactivated and reactivated; renamed; a new password ends every earlier session."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from domain.account import ADMIN, CUSTOMER, DOOR, ORGANIZER, Account
from domain.errors import OwnAccountError
from domain.ids import account_id_for
from tests.unit.factories import event_names, new_events, replay, state_of


def _unique_email() -> str:
    return f"fan-{uuid4().hex[:8]}@example.com"


def test_an_accounts_id_is_derived_from_its_email_whatever_its_case():
    email = _unique_email()

    account = Account(email=f"  {email.upper()} ", name="Ann", password_hash="h1", role=CUSTOMER)

    assert account.id == account_id_for(email)
    assert account.email == email


def test_registering_the_same_email_twice_targets_the_same_account():
    email = _unique_email()

    first = Account(email=email, name="Ann", password_hash="h1", role=CUSTOMER)
    second = Account(email=email.title(), name="Ann B.", password_hash="h2", role=CUSTOMER)

    assert first.id == second.id


def test_different_emails_make_different_accounts():
    assert account_id_for(_unique_email()) != account_id_for(_unique_email())


@pytest.mark.parametrize("role", [CUSTOMER, ADMIN])
def test_an_account_is_a_customer_or_an_admin(role):
    account = Account(email=_unique_email(), name="Ann", password_hash="h1", role=role)

    assert account.role == role
    [registered] = new_events(account)
    assert type(registered).__qualname__ == "Account.Registered"


@pytest.mark.parametrize("role", ["superuser", "", "Admin"])
def test_an_unknown_role_is_refused(role):
    with pytest.raises(ValueError, match="unknown role"):
        Account(email=_unique_email(), name="Ann", password_hash="h1", role=role)


def test_changing_the_password_hash_is_recorded_and_replayed():
    account = Account(email=_unique_email(), name="Ann", password_hash="h1", role=CUSTOMER)

    account.change_password_hash("h2")

    events = new_events(account)
    assert event_names(events) == ["Registered", "PasswordHashChanged"]
    rebuilt = replay(events)
    assert rebuilt.password_hash == "h2"
    assert state_of(rebuilt) == state_of(account)


# --- roles, deactivation, names and passwords (issue 14) ---

ADMIN_ID = uuid4()


def _account(role: str = CUSTOMER) -> Account:
    account = Account(email=_unique_email(), name="Ann", password_hash="h1", role=role)
    new_events(account)  # given: a registered account (its Registered event is history)
    return account


@pytest.mark.parametrize("role", [CUSTOMER, ORGANIZER, DOOR, ADMIN])
def test_a_new_account_is_active_in_session_generation_0_and_dated_by_its_registration(role):
    account = Account(email=_unique_email(), name="Ann", password_hash="h1", role=role)

    [registered] = new_events(account)
    assert account.active is True
    assert account.session_generation == 0
    assert account.created_at == registered.timestamp
    assert account.accepts_session(0) and not account.accepts_session(1)


def test_an_admin_changes_an_accounts_role():
    account = _account()

    account.change_role(ORGANIZER, by=ADMIN_ID)

    events = new_events(account)
    assert event_names(events) == ["RoleChanged"]
    assert events[0].role == ORGANIZER
    assert account.role == ORGANIZER
    assert account.session_generation == 0  # the role is read at each request: tokens stay


def test_giving_an_account_the_role_it_has_records_nothing():
    account = _account(ORGANIZER)

    account.change_role(ORGANIZER, by=ADMIN_ID)

    assert new_events(account) == []


@pytest.mark.parametrize("role", ["root", "", "Admin", "superuser"])
def test_an_unknown_role_is_never_given(role):
    account = _account()

    with pytest.raises(ValueError, match="unknown role"):
        account.change_role(role, by=ADMIN_ID)

    assert new_events(account) == [] and account.role == CUSTOMER


def test_an_admin_cannot_demote_themself():
    admin = _account(ADMIN)

    with pytest.raises(OwnAccountError):
        admin.change_role(CUSTOMER, by=admin.id)

    assert new_events(admin) == [] and admin.role == ADMIN


def test_an_admin_cannot_deactivate_themself():
    admin = _account(ADMIN)

    with pytest.raises(OwnAccountError):
        admin.deactivate(by=admin.id)

    assert new_events(admin) == [] and admin.active


def test_deactivating_refuses_every_earlier_session_and_reactivating_does_not_revive_them():
    account = _account()

    account.deactivate(by=ADMIN_ID)

    assert event_names(new_events(account)) == ["Deactivated"]
    assert not account.active
    assert not account.accepts_session(0) and not account.accepts_session(1)

    account.reactivate()

    assert event_names(new_events(account)) == ["Reactivated"]
    assert account.active
    assert not account.accepts_session(0)  # the token from before the deactivation
    assert account.accepts_session(1)  # a token from a new login


def test_deactivating_an_inactive_account_or_reactivating_an_active_one_records_nothing():
    account = _account()

    account.reactivate()
    account.deactivate(by=ADMIN_ID)
    account.deactivate(by=ADMIN_ID)

    assert event_names(new_events(account)) == ["Deactivated"]


def test_a_new_password_refuses_every_earlier_session():
    account = _account()

    account.change_password("h2")

    events = new_events(account)
    assert event_names(events) == ["PasswordChanged"]
    assert events[0].password_hash == "h2"
    assert account.password_hash == "h2"
    assert account.accepts_session(1) and not account.accepts_session(0)


def test_a_rehash_of_the_same_password_keeps_the_sessions():
    account = _account()

    account.change_password_hash("h1-stronger")

    assert account.accepts_session(0)


def test_renaming_records_the_new_name_and_the_same_name_records_nothing():
    account = _account()

    account.rename("Ann")
    account.rename("Ann Lee")

    events = new_events(account)
    assert event_names(events) == ["Renamed"]
    assert events[0].name == "Ann Lee" and account.name == "Ann Lee"


def test_every_change_replays_to_the_same_account():
    account = Account(email=_unique_email(), name="Ann", password_hash="h1", role=CUSTOMER)
    account.change_role(DOOR, by=ADMIN_ID)
    account.rename("Ann Lee")
    account.change_password("h2")
    account.deactivate(by=ADMIN_ID)
    account.reactivate()

    events = new_events(account)
    rebuilt = replay(events)

    assert event_names(events) == [
        "Registered",
        "RoleChanged",
        "Renamed",
        "PasswordChanged",
        "Deactivated",
        "Reactivated",
    ]
    assert state_of(rebuilt) == state_of(account)
    assert (rebuilt.role, rebuilt.name, rebuilt.active, rebuilt.session_generation) == (
        DOOR,
        "Ann Lee",
        True,
        2,
    )


# A Registered event as the code before roles could change stored it (captured from it).
STORED_BEFORE_ROLE_CHANGES = (
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-05T14:34:38.144413+00:00"},'
    b'"originator_topic":"domain.account:Account","email":"old@example.com","name":"Old",'
    b'"password_hash":"h","role":"customer"}'
)


def test_an_account_registered_before_roles_could_change_loads_active_in_generation_0():
    """Given a Registered event stored by the earlier code (no `active`, no generation);
    when it is read back and replayed, then a change appended after it;
    then the account is active in generation 0, dated by its registration, and changes."""
    mapper = Application[UUID](env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    stored = StoredEvent(
        account_id_for("old@example.com"),
        1,
        "domain.account:Account.Registered",
        STORED_BEFORE_ROLE_CHANGES,
    )

    account: Account = replay([mapper.to_domain_event(stored)])

    assert (account.email, account.name, account.role) == ("old@example.com", "Old", CUSTOMER)
    assert account.active and account.session_generation == 0
    assert account.created_at == datetime(2026, 12, 5, 14, 34, 38, 144413, tzinfo=UTC)
    account.deactivate(by=ADMIN_ID)
    assert [e.originator_version for e in new_events(account)] == [2]
