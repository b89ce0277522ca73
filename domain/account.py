"""Account: a registered person with one role; its id is derived from the e-mail address.

Roles: `customer` (buys tickets), `organizer` (runs their own shows), `door` (scans tickets at
the door), `admin` (manages everything)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import account_id_for

CUSTOMER = "customer"
ORGANIZER = "organizer"
DOOR = "door"
ADMIN = "admin"
ROLES = frozenset({CUSTOMER, ORGANIZER, DOOR, ADMIN})


class Account(Aggregate):
    @event("Registered")
    def __init__(self, email: str, name: str, password_hash: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role: {role}")
        self.email = email.strip().lower()
        self.name = name
        self.password_hash = password_hash
        self.role = role

    @staticmethod
    def create_id(email: str, **_: Any) -> UUID:
        return account_id_for(email)

    def change_password_hash(self, password_hash: str) -> None:
        """Re-hashing with stronger parameters is stored like any other change."""
        self._password_hash_changed(password_hash=password_hash)

    @event("PasswordHashChanged")
    def _password_hash_changed(self, password_hash: str) -> None:
        self.password_hash = password_hash
