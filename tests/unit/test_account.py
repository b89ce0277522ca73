"""Account: one per e-mail address, whatever its case; a customer or an admin."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.account import ADMIN, CUSTOMER, Account
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
