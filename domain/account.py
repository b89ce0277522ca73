"""Account: a registered person with one role; its id is derived from the e-mail address.

Roles: `customer` (buys tickets), `organizer` (runs their own shows), `door` (scans tickets at
the door), `admin` (manages everything).

Access tokens name the account's `session_generation` when issued: a new password or a
deactivation starts a new generation, which makes every earlier token worthless at once (a
reactivation does not bring them back). Everything else a token could claim (the role,
being active) is read from the account at each request, never believed from the token.

Erasure (`erase`) forgets the person: the account is deactivated (its holds are released like
any deactivated account's) and `Erased` leaves no e-mail, name or password hash in its state.
The events that carried them keep only ciphertext whose key the erasure destroys
(infra/personal_data.py, docs/PRIVACY.md); an erased account never changes again."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import OwnAccountError
from domain.ids import account_id_for

CUSTOMER = "customer"
ORGANIZER = "organizer"
DOOR = "door"
ADMIN = "admin"
ROLES = frozenset({CUSTOMER, ORGANIZER, DOOR, ADMIN})
ERASED = "erased"  # what an erased person's name reads as, everywhere


class Account(Aggregate):
    # Registered events stored before roles could change carry no `active` or generation:
    # they need none, an account starts active in generation 0 whenever it was registered.
    @event("Registered")
    def __init__(self, email: str, name: str, password_hash: str, role: str) -> None:
        _check_role(role)
        self.email = email.strip().lower()
        self.name = name
        self.password_hash = password_hash
        self.role = role
        self.active = True
        self.session_generation = 0
        self.erased = False

    @staticmethod
    def create_id(email: str, **_: Any) -> UUID:
        return account_id_for(email)

    @property
    def created_at(self) -> datetime:
        """When the account was registered (its Registered event's time)."""
        return self.created_on

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def accepts_session(self, generation: int) -> bool:
        """A token of `generation` still opens this account."""
        return self.active and generation == self.session_generation

    def change_password_hash(self, password_hash: str) -> None:
        """Re-hashing with stronger parameters is stored like any other change (same
        password: sessions stay valid)."""
        self._password_hash_changed(password_hash=password_hash)

    @event("PasswordHashChanged")
    def _password_hash_changed(self, password_hash: str) -> None:
        self.password_hash = password_hash

    def change_password(self, password_hash: str) -> None:
        """The owner chose a new password: every token issued before stops working."""
        self._password_changed(password_hash=password_hash)

    @event("PasswordChanged")
    def _password_changed(self, password_hash: str) -> None:
        self.password_hash = password_hash
        self.session_generation += 1

    def rename(self, name: str) -> None:
        if name != self.name:
            self._renamed(name=name)

    @event("Renamed")
    def _renamed(self, name: str) -> None:
        self.name = name

    def change_role(self, role: str, by: UUID) -> None:
        """An admin gives the account another role, effective at its next request. Nobody
        demotes themself: the system must keep an admin (another admin can)."""
        _check_role(role)
        if role == self.role:
            return
        if by == self.id:
            raise OwnAccountError(self.id, "change their own role")
        self._role_changed(role=role)

    @event("RoleChanged")
    def _role_changed(self, role: str) -> None:
        self.role = role

    def deactivate(self, by: UUID) -> None:
        """The account can no longer log in and its tokens are refused at once. Nobody
        deactivates themself (same reason as for roles). Already inactive: nothing to do."""
        if by == self.id:
            raise OwnAccountError(self.id, "deactivate their own account")
        if self.active:
            self._deactivated()

    @event("Deactivated")
    def _deactivated(self) -> None:
        self.active = False
        self.session_generation += 1

    def reactivate(self) -> None:
        """The account may log in again (with new tokens: the old ones stay worthless)."""
        if not self.active:
            self._reactivated()

    @event("Reactivated")
    def _reactivated(self) -> None:
        self.active = True

    def erase(self) -> None:
        """Forget the person: deactivated first (so their unpaid holds are released as for
        any deactivation), then no e-mail, name or password hash. Erased already: nothing."""
        if self.erased:
            return
        if self.active:
            self._deactivated()
        self._erased()

    @event("Erased")
    def _erased(self) -> None:
        self.email = ""  # "": nobody is mailed any more
        self.name = ERASED
        self.password_hash = ""  # no password matches it
        self.active = False
        self.erased = True
        self.session_generation += 1


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role: {role}")
