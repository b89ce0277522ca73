"""Handlers for accounts: register customers and admins, check credentials."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from commands.errors import AccountExistsError, NotFoundError, VersionConflictError
from commands.models import RegisterAccount
from commands.ports import EventStore, PasswordHasher
from domain.account import Account
from domain.ids import account_id_for


class InvalidCredentialsError(Exception):
    """Unknown e-mail or wrong password (deliberately not saying which)."""


@dataclass(frozen=True)
class AccountRegistered:
    account_id: UUID
    position: int


class AccountCommands:
    def __init__(self, store: EventStore, hasher: PasswordHasher) -> None:
        self._store = store
        self._hasher = hasher

    def register(self, command: RegisterAccount) -> AccountRegistered:
        """The account id comes from the e-mail, so a second registration collides."""
        account = Account(
            email=command.email,
            name=command.name,
            password_hash=self._hasher.hash(command.password),
            role=command.role,
        )
        try:
            position = self._store.save(account)
        except VersionConflictError:
            raise AccountExistsError(command.email) from None
        return AccountRegistered(account.id, position)

    def ensure_admin(self, email: str, password: str, name: str = "Administrator") -> UUID:
        """Start-up: create the configured admin unless the account exists already."""
        command = RegisterAccount(email=email, password=password, name=name, role="admin")
        try:
            return self.register(command).account_id
        except AccountExistsError:
            return account_id_for(email)

    def authenticate(self, email: str, password: str) -> Account:
        try:
            account = self._store.get(account_id_for(email), Account)
        except NotFoundError:
            self._hasher.hash(password)  # same work either way: no timing oracle for e-mails
            raise InvalidCredentialsError from None
        if not self._hasher.verify(account.password_hash, password):
            raise InvalidCredentialsError
        if self._hasher.needs_rehash(account.password_hash):
            account.change_password_hash(self._hasher.hash(password))
            self._store.save(account)
        return account
