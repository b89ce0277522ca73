"""Accounts, for the admin's list: who they are, their role, whether they are active. View:
`read.accounts`. The password hash the account events carry never enters this read model; an
erased account's e-mail and name read "erased"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from domain.account import ERASED, Account
from projections.base import Page, Projection, event_type
from projections.tables import Table

ACCOUNTS = Table(
    "accounts",
    columns=(
        ("account_id", "uuid NOT NULL"),
        ("email", "text NOT NULL"),
        ("name", "text NOT NULL"),
        ("role", "text NOT NULL"),
        ("active", "boolean NOT NULL"),
        ("created_at", "timestamptz NOT NULL"),
    ),
    key=("account_id",),
    # Newest first, all or by role; `q` (a substring of the e-mail or name) scans: admin only.
    indexes=("(created_at DESC, account_id DESC)", "(role, created_at DESC, account_id DESC)"),
)

COLUMNS = "account_id, email, name, role, active, created_at"


class Accounts(Projection):
    kind = "accounts"
    tables = (ACCOUNTS,)
    views = {"accounts": "accounts"}

    def _registered(self, page: Page, e: Any) -> None:
        page[ACCOUNTS].insert(
            {
                "account_id": e.originator_id,
                "email": e.email.strip().lower(),  # as the account keeps it
                "name": e.name,
                "role": e.role,
                "active": True,
                "created_at": e.timestamp,
            }
        )

    def _renamed(self, page: Page, e: Any) -> None:
        page[ACCOUNTS].set(e.originator_id, name=e.name)

    def _role_changed(self, page: Page, e: Any) -> None:
        page[ACCOUNTS].set(e.originator_id, role=e.role)

    def _deactivated(self, page: Page, e: Any) -> None:
        page[ACCOUNTS].set(e.originator_id, active=False)

    def _reactivated(self, page: Page, e: Any) -> None:
        page[ACCOUNTS].set(e.originator_id, active=True)

    def _erased(self, page: Page, e: Any) -> None:
        # The row stays (an admin sees that the account existed and was erased), nameless.
        page[ACCOUNTS].set(e.originator_id, email=ERASED, name=ERASED, active=False)

    handlers = {
        event_type(Account, "Registered"): _registered,
        event_type(Account, "Renamed"): _renamed,
        event_type(Account, "RoleChanged"): _role_changed,
        event_type(Account, "Deactivated"): _deactivated,
        event_type(Account, "Reactivated"): _reactivated,
        event_type(Account, "Erased"): _erased,
    }


@dataclass(frozen=True)
class AccountFilter:
    text: str | None = None  # a substring of the e-mail or the name, any case
    role: str | None = None


def _like_pattern(text: str) -> str:
    """`text` as a literal substring for ILIKE: its wildcards and escapes mean themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_accounts(
    conn: psycopg.Connection[Any],
    where: AccountFilter,
    limit: int,
    before: tuple[datetime, UUID] | None = None,
) -> list[dict[str, Any]]:
    """Accounts newest first (then by id), at most `limit`, after a keyset cursor."""
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    if where.text:
        conditions.append(sql.SQL("(email ILIKE %s OR name ILIKE %s)"))
        pattern = _like_pattern(where.text)
        params += [pattern, pattern]
    if where.role:
        conditions.append(sql.SQL("role = %s"))
        params.append(where.role)
    if before is not None:
        conditions.append(sql.SQL("(created_at, account_id) < (%s, %s)"))
        params.extend(before)
    query = sql.SQL(
        "SELECT " + COLUMNS + " FROM read.accounts {} "
        "ORDER BY created_at DESC, account_id DESC LIMIT %s"
    ).format(sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL(""))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, [*params, limit]).fetchall()


def find_account(conn: psycopg.Connection[Any], account_id: UUID) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT " + COLUMNS + " FROM read.accounts WHERE account_id = %s", (account_id,)
        ).fetchone()
