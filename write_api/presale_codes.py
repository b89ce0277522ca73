"""A show's presale codes: create (given or generated), list with their uses, revoke. Only the
show's organiser or an admin (403 `forbidden` for anyone else, 404 for an unknown show). The
list is read in the show's writer (like `GET /me` reads the store): never stale."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from commands.models import (
    CreatePresaleCodes,
    PresaleCodesRequest,
    PresaleCodeText,
    RevokePresaleCode,
)
from commands.presale import CodeStatus, PresaleCommands
from commands.shows import Manager
from http_shell.deps import ContainerDep, OrganizerUser
from http_shell.problems import ProblemError
from infra.tokens import Principal
from write_api.waiting import outcome_of

router = APIRouter(prefix="/shows", tags=["presale codes"])

Responses = dict[int | str, dict[str, Any]]
MANAGED: Responses = {
    403: {"description": "`forbidden`: not the show's organiser, nor an admin"},
    404: {"description": "`not-found`: no such show, or it was deleted"},
}
MAX_PAGE = 1000


class PresaleCodeView(BaseModel):
    code: str
    max_uses: int
    uses: int = Field(
        description="bookings held or bought with it now (a lapsed hold gives its use back)"
    )
    tiers: list[str] | None = Field(description="the price tiers it is for (null: all)")
    discount_percent: int | None
    price_cents: int | None = Field(description="the price per ticket with the code")
    valid_from: datetime | None
    valid_until: datetime | None
    revoked: bool
    created_at: datetime


class CodesCreatedReply(BaseModel):
    show_id: UUID
    codes: list[PresaleCodeView]
    position: int


class CodeListReply(BaseModel):
    show_id: UUID
    items: list[PresaleCodeView]
    total: int
    next_offset: int | None = Field(description="the offset of the next page (null: no more)")
    position: int


def _view(code: CodeStatus) -> PresaleCodeView:
    return PresaleCodeView(
        code=code.code,
        max_uses=code.max_uses,
        uses=code.uses,
        tiers=code.tiers,
        discount_percent=code.discount_percent,
        price_cents=code.price_cents,
        valid_from=code.valid_from,
        valid_until=code.valid_until,
        revoked=code.revoked,
        created_at=code.created_at,
    )


def _manager(user: Principal) -> Manager:
    return Manager(user.account_id, user.is_admin)


def _commands(container: ContainerDep) -> PresaleCommands:
    if container.presale is None:
        raise ProblemError(503, "unavailable", "presale codes are not available here")
    return container.presale


@router.post(
    "/{show_id}/codes",
    status_code=status.HTTP_201_CREATED,
    response_model=CodesCreatedReply,
    responses={
        **MANAGED,
        409: {
            "description": "`code-exists`: a code exists already for the show (`codes` names "
            "them; nothing created); `illegal-transition`: the show is cancelled"
        },
        422: {
            "description": "`validation-error`: neither or both of `codes` and `count`, a "
            "malformed code (4 to 32 of A-Z, 0-9, '-', '_'), a code twice, more than 1000, "
            "`discount_percent` with `price_cents`; `invalid-codes`: an unknown tier, "
            "`valid_until` in the past or not after `valid_from`, more than 20000 codes"
        },
    },
)
async def create_codes(
    show_id: UUID, body: PresaleCodesRequest, user: OrganizerUser, container: ContainerDep
) -> CodesCreatedReply:
    """Create presale codes: the given `codes` (normalised to upper case), or `count`
    unguessable generated ones (12 characters, no look-alikes), all with the same terms:
    `max_uses` (bookings), optionally `tiers`, `discount_percent` or `price_cents` (per
    ticket), `valid_from`, `valid_until`. All or nothing."""
    command = CreatePresaleCodes(show_id=show_id, request=body)
    future = await run_in_threadpool(_commands(container).create_codes, command, _manager(user))
    done = await outcome_of(future, container.settings.command_timeout_seconds)
    return CodesCreatedReply(
        show_id=show_id, codes=[_view(c) for c in done.codes], position=done.position
    )


@router.get("/{show_id}/codes", response_model=CodeListReply, responses=MANAGED)
async def list_codes(
    show_id: UUID,
    user: OrganizerUser,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CodeListReply:
    """The show's codes in the order they were created, with their uses now (bookings held or
    bought with each), whether revoked, and their validity; `limit` from `offset`."""
    commands = _commands(container)
    future = await run_in_threadpool(commands.list_codes, show_id, _manager(user), offset, limit)
    page = await outcome_of(future, container.settings.command_timeout_seconds)
    following = offset + len(page.codes)
    return CodeListReply(
        show_id=show_id,
        items=[_view(c) for c in page.codes],
        total=page.total,
        next_offset=following if following < page.total else None,
        position=page.position,
    )


@router.delete(
    "/{show_id}/codes/{code}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        **MANAGED,
        404: {"description": "`not-found`: no such show (or deleted), or no such code"},
    },
)
async def revoke_code(
    show_id: UUID, code: PresaleCodeText, user: OrganizerUser, container: ContainerDep
) -> Response:
    """Revoke a code: it admits no new hold (bookings made with it keep it and their price).
    Revoking it again changes nothing (204)."""
    command = RevokePresaleCode(show_id=show_id, code=code)
    future = await run_in_threadpool(_commands(container).revoke_code, command, _manager(user))
    await outcome_of(future, container.settings.command_timeout_seconds)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
