"""Account: a registered customer or admin; its id is derived from the e-mail address."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import account_id_for

CUSTOMER = "customer"
ADMIN = "admin"
ROLES = frozenset({CUSTOMER, ADMIN})


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
