"""Handlers for accounts: register, check credentials, the owner's changes (name, password)
and the admin's (role, deactivation), erasure (the owner's or an admin's); and the account's
standing that every request checks."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from eventsourcing.domain import CanMutateAggregate, DomainEventProtocol
from eventsourcing.persistence import PersistenceError

from commands.errors import (
    AccountExistsError,
    ConcurrencyError,
    NotFoundError,
    StoreUnavailableError,
    VersionConflictError,
)
from commands.models import (
    ChangeAccountRole,
    ChangePassword,
    RegisterAccount,
    RenameAccount,
    SetAccountActive,
)
from commands.ports import EventStore, PasswordHasher
from domain.account import Account
from domain.errors import OwnAccountError
from domain.ids import account_id_for

ATTEMPTS = 5  # optimistic retries when two changes of one account race


class InvalidCredentialsError(Exception):
    """Unknown e-mail or wrong password (deliberately not saying which)."""


class AccountDeactivatedError(Exception):
    """Right e-mail and password, but an admin deactivated the account (said only to whoever
    knows the password)."""


class WrongPasswordError(Exception):
    """The current password given to change it is wrong."""


class PersonalDataEraser(Protocol):
    """Destroys what the log cannot forget by itself (docs/PRIVACY.md): the person's data key,
    and their address where other tables keep it (the e-mails sent)."""

    def forget(self, account_id: UUID, email: str) -> None: ...


class NoEraser:
    """For handlers built without one (tests of other parts): nothing beside the log."""

    def forget(self, account_id: UUID, email: str) -> None:
        return None


@dataclass(frozen=True)
class EraseMe:
    account_id: UUID
    password: str  # re-entered: a stolen token alone cannot erase an account


@dataclass(frozen=True)
class EraseAccount:
    account_id: UUID
    actor_id: UUID  # the admin


STANDINGS_KEPT = 20_000  # accounts whose standing a process keeps (~2 KB each)


class AccountStore(EventStore, Protocol):
    def history(self, aggregate_id: UUID) -> Iterator[DomainEventProtocol[UUID]]:
        """The aggregate's events, oldest first (one query, no snapshot lookup)."""
        ...


@dataclass(frozen=True)
class AccountRegistered:
    account_id: UUID
    position: int


@dataclass(frozen=True)
class AccountChanged:
    account: Account
    position: int


class AccountCommands:
    def __init__(
        self, store: AccountStore, hasher: PasswordHasher, eraser: PersonalDataEraser | None = None
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._eraser = eraser or NoEraser()
        # The accounts of recent requests as this process saw them last (see `standing`).
        self._standings: OrderedDict[UUID, Account] = OrderedDict()
        self._standing_locks: dict[UUID, threading.Lock] = {}
        self._standings_lock = threading.Lock()

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
        if account.erased:
            self._hasher.hash(password)  # as for an unknown e-mail
            raise InvalidCredentialsError
        if not self._hasher.verify(account.password_hash, password):
            raise InvalidCredentialsError
        if not account.active:
            raise AccountDeactivatedError
        if self._hasher.needs_rehash(account.password_hash):
            account.change_password_hash(self._hasher.hash(password))
            self._store.save(account)
        return account

    def standing(self, account_id: UUID) -> Account | None:
        """The account as it is now, for checking a request's token (None: no such account).
        Every call reads the store (a role change or a deactivation counts from the very next
        request, in every process), but only what is new: the account a process saw last is
        kept, and one indexed read of the events after its version brings it up to date
        (usually none: nothing decoded, no personal data decrypted). Callers only read it."""
        with self._standings_lock:
            lock = self._standing_locks.setdefault(account_id, threading.Lock())
        with lock:  # one catch-up of an account at a time: it changes the kept copy
            kept = self._standings.get(account_id)
            try:
                account = self._replay(account_id) if kept is None else self._store.catch_up(kept)
            except PersistenceError as error:
                raise StoreUnavailableError(str(error)) from error
        if account is not None and kept is None:
            with self._standings_lock:
                self._standings[account_id] = account
                while len(self._standings) > STANDINGS_KEPT:
                    gone, _ = self._standings.popitem(last=False)
                    self._standing_locks.pop(gone, None)
        return account

    def _replay(self, account_id: UUID) -> Account | None:
        """The account from all its events: one indexed read, no snapshot lookup."""
        account: Account | None = None
        for stored in self._store.history(account_id):
            assert isinstance(stored, CanMutateAggregate)
            mutated = stored.mutate(account)
            if not isinstance(mutated, Account):
                return None  # a stream of another kind: no account has this id
            account = mutated
        return account

    def get(self, account_id: UUID) -> Account:
        return self._store.get(account_id, Account)

    def rename(self, command: RenameAccount) -> AccountChanged:
        return self._change(command.account_id, lambda account: account.rename(command.name))

    def change_password(self, command: ChangePassword) -> AccountChanged:
        """Only with the current password; every token issued before stops working."""
        new_hash = self._hasher.hash(command.new)

        def decide(account: Account) -> None:
            if not self._hasher.verify(account.password_hash, command.current):
                raise WrongPasswordError
            account.change_password(new_hash)

        return self._change(command.account_id, decide)

    def change_role(self, command: ChangeAccountRole) -> AccountChanged:
        return self._change(
            command.account_id,
            lambda account: account.change_role(command.role, by=command.actor_id),
        )

    def set_active(self, command: SetAccountActive) -> AccountChanged:
        def decide(account: Account) -> None:
            if command.active:
                account.reactivate()
            else:
                account.deactivate(by=command.actor_id)

        return self._change(command.account_id, decide)

    def erase_me(self, command: EraseMe) -> AccountChanged:
        """The owner forgets themself (password re-entered). An admin cannot: another admin
        erases them, so an admin always remains."""

        def decide(account: Account) -> None:
            if not self._hasher.verify(account.password_hash, command.password):
                raise WrongPasswordError
            if account.is_admin:
                raise OwnAccountError(account.id, "erase their own account")
            account.erase()

        return self._erase(command.account_id, decide)

    def erase(self, command: EraseAccount) -> AccountChanged:
        """An admin forgets another account (erasing an erased one again only finishes the
        forgetting, e.g. after a crash between the event and the key's destruction)."""

        def decide(account: Account) -> None:
            if account.id == command.actor_id:
                raise OwnAccountError(account.id, "erase their own account")
            account.erase()

        return self._erase(command.account_id, decide, again=True)

    def _erase(
        self, account_id: UUID, decide: Callable[[Account], None], again: bool = False
    ) -> AccountChanged:
        """Record `Erased`, then forget what lies beside the log. The key goes last: until
        then a retry can still read the address it has to scrub."""
        for _ in range(ATTEMPTS):
            account = self._store.get(account_id, Account)
            if account.erased and not again:
                raise NotFoundError("Account", account_id)
            email = account.email or self._registered_email(account_id)
            decide(account)
            try:
                position = self._store.save(account)
            except VersionConflictError:
                continue
            self._eraser.forget(account_id, email)
            return AccountChanged(account, position)
        raise ConcurrencyError(f"account {account_id} kept changing; retry")

    def _registered_email(self, account_id: UUID) -> str:
        """The address as registered ("" once the key is gone): an erased account's state has
        none, but a retried erasure still needs it to scrub the e-mails sent."""
        for stored in self._store.history(account_id):
            email = getattr(stored, "email", None)
            if isinstance(email, str):
                return email
        return ""

    def _change(self, account_id: UUID, decide: Callable[[Account], None]) -> AccountChanged:
        """Load, decide, save; a concurrent change of the same account makes it start over.
        An erased account is gone: it changes no more."""
        for _ in range(ATTEMPTS):
            account = self._store.get(account_id, Account)
            if account.erased:
                raise NotFoundError("Account", account_id)
            decide(account)
            try:
                position = self._store.save(account)
            except VersionConflictError:
                continue
            return AccountChanged(account, position)
        raise ConcurrencyError(f"account {account_id} kept changing; retry")
