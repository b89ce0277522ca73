"""Accounts: the caller's own (`/me`: read, rename, change the password, export their data,
erase themself) and the admin's commands on any account (role, deactivate, reactivate, erase).
The admin's list and details are queries (read_api/accounts.py). No answer ever carries the
password hash."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from commands.accounts import AccountChanged, EraseAccount, EraseMe
from commands.models import (
    AccountName,
    ChangeAccountRole,
    ChangePassword,
    Password,
    RenameAccount,
    RoleName,
    SetAccountActive,
)
from domain.account import Account
from http_shell.deps import AdminUser, ContainerDep, CurrentUser, enforce_rate_limit
from projections.personal_export import personal_data_of

router = APIRouter(tags=["accounts"])


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # e.g. no `account_id`: /me is the caller


class RenameBody(Body):
    name: AccountName


class PasswordBody(Body):
    current: Annotated[str, Field(min_length=1, max_length=128)]
    new: Password


class RoleBody(Body):
    role: RoleName


class EraseBody(Body):
    password: Annotated[str, Field(min_length=1, max_length=128)]  # the caller's, re-entered


class AccountPublic(BaseModel):
    account_id: UUID
    email: str
    name: str
    role: str
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountPublic:
        return cls(
            account_id=account.id,
            email=account.email,
            name=account.name,
            role=account.role,
            active=account.active,
            created_at=account.created_at,
        )


class AccountAnswer(AccountPublic):
    position: int  # pass as `after` to the query API to read the change


class PasswordChanged(BaseModel):
    access_token: str  # a fresh token: every token issued before this change is refused
    token_type: str = "bearer"
    expires_in: int
    position: int


class Erased(BaseModel):
    account_id: UUID
    status: str = "erased"
    position: int  # pass as `after` to the query API: its read models say "erased" from there


class PersonalData(BaseModel):
    """Everything TicketBlitz keeps about the caller (docs/PRIVACY.md)."""

    account: AccountPublic
    bookings: list[dict[str, Any]]
    tickets: list[dict[str, Any]]
    waitlist_entries: list[dict[str, Any]]
    emails_sent: list[dict[str, Any]]


def _answer(changed: AccountChanged) -> AccountAnswer:
    return AccountAnswer(
        **AccountPublic.of(changed.account).model_dump(), position=changed.position
    )


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "`unauthorized`: no valid token (expired, revoked, account inactive)"}
}
ADMIN_ONLY: dict[int | str, dict[str, Any]] = {
    **UNAUTHORIZED,
    403: {"description": "`forbidden`: only admins"},
    404: {"description": "`not-found`: no such account"},
    422: {"description": "`validation-error`: e.g. an unknown role"},
}


@router.get("/me", response_model=AccountPublic, responses=UNAUTHORIZED)
async def get_me(user: CurrentUser, container: ContainerDep) -> AccountPublic:
    """The caller's account, as it is now (straight from the event store, never stale)."""
    account = await run_in_threadpool(container.accounts.get, user.account_id)
    return AccountPublic.of(account)


@router.patch(
    "/me",
    response_model=AccountAnswer,
    responses={
        **UNAUTHORIZED,
        422: {
            "description": "`validation-error`: 1-100 characters, one line, no control characters"
        },
    },
)
async def rename_me(body: RenameBody, user: CurrentUser, container: ContainerDep) -> AccountAnswer:
    """Change the caller's display name."""
    command = RenameAccount(account_id=user.account_id, name=body.name)
    return _answer(await run_in_threadpool(container.accounts.rename, command))


@router.post(
    "/me/password",
    response_model=PasswordChanged,
    responses={
        **UNAUTHORIZED,
        422: {
            "description": "`wrong-password` (the current password is wrong: nothing changed) "
            "or `validation-error` (the new one must have 8-128 characters)"
        },
        429: {"description": "`rate-limited`: too many attempts (see Retry-After)"},
    },
)
async def change_my_password(
    body: PasswordBody, user: CurrentUser, container: ContainerDep
) -> PasswordChanged:
    """Change the caller's password (the current one is required). Every token issued before,
    this request's included, is refused from now on; the answer carries a fresh token."""
    settings = container.settings
    # A stolen token must not become a way to guess the password: as slow as logging in.
    enforce_rate_limit(
        container, f"password:{user.account_id}", settings.rate_limit_login_pair_per_minute
    )
    command = ChangePassword(account_id=user.account_id, current=body.current, new=body.new)
    changed = await run_in_threadpool(container.accounts.change_password, command)
    account = changed.account
    token = container.tokens.issue(account.id, account.role, account.session_generation)
    return PasswordChanged(
        access_token=token, expires_in=container.tokens.ttl_seconds, position=changed.position
    )


@router.post(
    "/admin/accounts/{account_id}/role",
    response_model=AccountAnswer,
    responses={
        **ADMIN_ONLY,
        409: {"description": "`own-account`: an admin cannot change their own role"},
    },
)
async def change_role(
    account_id: UUID, body: RoleBody, admin: AdminUser, container: ContainerDep
) -> AccountAnswer:
    """Give an account another role (`customer`, `organizer`, `door`, `admin`); its existing
    tokens carry the new role from their next request."""
    command = ChangeAccountRole(account_id=account_id, role=body.role, actor_id=admin.account_id)
    return _answer(await run_in_threadpool(container.accounts.change_role, command))


@router.post(
    "/admin/accounts/{account_id}/deactivate",
    response_model=AccountAnswer,
    responses={
        **ADMIN_ONLY,
        409: {"description": "`own-account`: an admin cannot deactivate their own account"},
    },
)
async def deactivate(account_id: UUID, admin: AdminUser, container: ContainerDep) -> AccountAnswer:
    """Deactivate an account: its tokens are refused at once, it cannot log in, and its unpaid
    holds are released. Deactivating an inactive account changes nothing."""
    command = SetAccountActive(account_id=account_id, active=False, actor_id=admin.account_id)
    return _answer(await run_in_threadpool(container.accounts.set_active, command))


@router.post(
    "/admin/accounts/{account_id}/reactivate", response_model=AccountAnswer, responses=ADMIN_ONLY
)
async def reactivate(account_id: UUID, admin: AdminUser, container: ContainerDep) -> AccountAnswer:
    """Let a deactivated account log in again (its old tokens stay refused)."""
    command = SetAccountActive(account_id=account_id, active=True, actor_id=admin.account_id)
    return _answer(await run_in_threadpool(container.accounts.set_active, command))


@router.get("/me/export", response_model=PersonalData, responses=UNAUTHORIZED)
async def export_me(user: CurrentUser, container: ContainerDep) -> PersonalData:
    """The caller's data: the account (from the log, never stale) and, from the read models,
    their bookings, tickets, waiting-list entries, and the e-mails sent to them (a booking
    made a moment ago may still be on its way to the read models)."""
    account = await run_in_threadpool(container.accounts.get, user.account_id)

    def load() -> dict[str, list[dict[str, Any]]]:
        with container.store.connection() as conn:
            return personal_data_of(conn, account.id, account.email)

    return PersonalData(account=AccountPublic.of(account), **await run_in_threadpool(load))


@router.delete(
    "/me",
    response_model=Erased,
    responses={
        **UNAUTHORIZED,
        409: {"description": "`own-account`: an admin is erased by another admin"},
        422: {"description": "`wrong-password` (nothing changed) or `validation-error`"},
        429: {"description": "`rate-limited`: too many attempts (see Retry-After)"},
    },
)
async def erase_me(body: EraseBody, user: CurrentUser, container: ContainerDep) -> Erased:
    """Forget the caller (the password re-entered): every token stops working, unpaid holds
    are released as for a deactivation, the e-mail, name and password hash become unreadable
    everywhere (their key is destroyed); bookings and payments keep their amounts and ids."""
    settings = container.settings
    enforce_rate_limit(
        container, f"password:{user.account_id}", settings.rate_limit_login_pair_per_minute
    )
    command = EraseMe(account_id=user.account_id, password=body.password)
    changed = await run_in_threadpool(container.accounts.erase_me, command)
    return Erased(account_id=changed.account.id, position=changed.position)


@router.delete(
    "/admin/accounts/{account_id}",
    response_model=Erased,
    responses={
        **ADMIN_ONLY,
        409: {"description": "`own-account`: an admin cannot erase their own account"},
    },
)
async def erase(account_id: UUID, admin: AdminUser, container: ContainerDep) -> Erased:
    """Forget an account, as `DELETE /me` does (not the caller's own: 409 `own-account`).
    Erasing an erased account again is harmless."""
    command = EraseAccount(account_id=account_id, actor_id=admin.account_id)
    changed = await run_in_threadpool(container.accounts.erase, command)
    return Erased(account_id=changed.account.id, position=changed.position)
