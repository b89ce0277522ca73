"""Admin queries on accounts, from the `accounts` read model: a searchable list and one
account. (The caller's own account, never stale, is `GET /me` on the command API.)"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from http_shell.deps import AdminUser
from http_shell.problems import ProblemError
from projections.accounts import AccountFilter, find_account, list_accounts
from projections.registry import ACCOUNTS
from read_api.deps import (
    NO_NUL,
    After,
    Cursor,
    Limit,
    ReadSideDep,
    caught_up,
    decode_cursor,
    encode_cursor,
    query,
)

router = APIRouter(prefix="/admin/accounts", tags=["admin"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "`unauthorized`: no valid token"},
    403: {"description": "`forbidden`: only admins"},
    503: {"description": "the read models have not reached `after` yet (see Retry-After)"},
}


class AccountListed(BaseModel):
    account_id: UUID
    email: str
    name: str
    role: str
    active: bool
    created_at: datetime


class AccountDetails(AccountListed):
    position: int


class AccountPage(BaseModel):
    items: list[AccountListed]
    next_cursor: str | None
    position: int


@router.get(
    "",
    response_model=AccountPage,
    responses={**RESPONSES, 422: {"description": "`invalid-cursor` or `validation-error`"}},
)
async def list_all(
    _: AdminUser,
    read: ReadSideDep,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_NUL,
            description="a part of the e-mail or the name, any case (taken literally)",
        ),
    ] = None,
    role: Annotated[
        Literal["customer", "organizer", "door", "admin"] | None, Query(description="only")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
    after: After = None,
) -> AccountPage:
    """Accounts, newest first, optionally searched and filtered by role; `next_cursor` pages
    on. With `after` (a `position` the command API returned) the list includes that change."""
    where = AccountFilter(text=(q or "").strip() or None, role=role)
    keyset = decode_cursor(cursor)
    position = await caught_up(read, [ACCOUNTS], after)

    def load() -> list[dict[str, Any]]:
        with read.models.connection() as conn:
            return list_accounts(conn, where, limit + 1, keyset)

    rows = await query(load)
    items = [AccountListed(**row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return AccountPage(
        items=items,
        next_cursor=encode_cursor(last.created_at, last.account_id) if last else None,
        position=position,
    )


@router.get(
    "/{account_id}",
    response_model=AccountDetails,
    responses={**RESPONSES, 404: {"description": "`not-found`: no such account"}},
)
async def get_one(
    account_id: UUID, _: AdminUser, read: ReadSideDep, after: After = None
) -> AccountDetails:
    """One account. With `after` (a `position` the command API returned) it includes that
    change."""
    position = await caught_up(read, [ACCOUNTS], after)

    def load() -> dict[str, Any] | None:
        with read.models.connection() as conn:
            return find_account(conn, account_id)

    row = await query(load)
    if row is None:
        raise ProblemError(404, "not-found", "account not found")
    return AccountDetails(**row, position=position)
