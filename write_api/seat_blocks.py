"""The organiser's controls over what a show sells: seat blocks and general-admission capacity.
Only the show's organiser or an admin (403 `forbidden` for anyone else)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from commands.models import Code, Command, Reason
from commands.seat_blocks import (
    BlockSeats,
    ChangeCapacity,
    SeatBlockCommands,
    SeatList,
    UnblockSeats,
)
from commands.shows import Manager
from domain.seatmap import MAX_SEATS_PER_SHOW
from http_shell.deps import ContainerDep, OrganizerUser
from infra.tokens import Principal
from write_api.waiting import outcome_of

router = APIRouter(prefix="/shows", tags=["shows"])

Responses = dict[int | str, dict[str, Any]]
MANAGED: Responses = {
    403: {"description": "`forbidden`: not the show's organiser, nor an admin"},
    404: {"description": "`not-found`: no such show, or it was deleted"},
}
SETTLED = "`illegal-transition`: the show is cancelled or has started (what it sells is settled)"


class BlockRequest(Command):
    seats: SeatList = Field(description="seat ids (`SECTION-ROW-NUMBER`), 1 to 1000, distinct")
    reason: Reason = Field(description="why they are off sale (one line, 1 to 200 characters)")


class UnblockRequest(Command):
    seats: SeatList = Field(description="seat ids (`SECTION-ROW-NUMBER`), 1 to 1000, distinct")


class CapacityRequest(Command):
    capacity: int = Field(ge=0, le=MAX_SEATS_PER_SHOW, strict=True)


class SeatsBlockedReply(BaseModel):
    show_id: UUID
    blocked: list[str] = Field(description="seats this request took off sale")
    unchanged: list[str] = Field(description="seats that were blocked already (reason kept)")
    position: int


class SeatsUnblockedReply(BaseModel):
    show_id: UUID
    unblocked: list[str] = Field(description="seats this request put back on sale")
    unchanged: list[str] = Field(description="seats that were not blocked (left as they are)")
    position: int


class CapacityReply(BaseModel):
    show_id: UUID
    section: str
    capacity: int
    changed: bool = Field(description="false: the section had this capacity already")
    position: int


def _manager(user: Principal) -> Manager:
    return Manager(user.account_id, user.is_admin)


def _commands(container: ContainerDep) -> SeatBlockCommands:
    return container.seat_blocks


@router.post(
    "/{show_id}/seats/block",
    response_model=SeatsBlockedReply,
    responses={
        **MANAGED,
        409: {
            "description": "`seats-unavailable`: a seat is held or sold (`seats` names them; "
            f"nothing is blocked); {SETTLED}"
        },
        422: {
            "description": "`unknown-seats`: not in the show's map (`seats` names them); "
            "`validation-error`: no seats, more than 1000, a seat twice, a malformed seat "
            "id, or a reason that is empty, longer than 200 characters or holds control "
            "characters"
        },
    },
)
async def block_seats(
    show_id: UUID, body: BlockRequest, user: OrganizerUser, container: ContainerDep
) -> SeatsBlockedReply:
    """Take seats off sale (a production hold, a broken seat, house seats): a blocked seat is
    neither held, sold nor chosen by best-available, and shows as `blocked` in the seat map.
    Idempotent: a seat blocked already stays blocked with its first reason (`unchanged`). A
    seat held or sold by a booking cannot be blocked: the whole request is refused (409)."""
    command = BlockSeats(show_id=show_id, seats=body.seats, reason=body.reason)
    future = await run_in_threadpool(_commands(container).block_seats, command, _manager(user))
    done = await outcome_of(future, container.settings.command_timeout_seconds)
    return SeatsBlockedReply(
        show_id=show_id, blocked=done.changed, unchanged=done.unchanged, position=done.position
    )


@router.post(
    "/{show_id}/seats/unblock",
    response_model=SeatsUnblockedReply,
    responses={
        **MANAGED,
        409: {"description": SETTLED},
        422: {
            "description": "`unknown-seats`: not in the show's map; `validation-error`: no "
            "seats, more than 1000, a seat twice or a malformed seat id"
        },
    },
)
async def unblock_seats(
    show_id: UUID, body: UnblockRequest, user: OrganizerUser, container: ContainerDep
) -> SeatsUnblockedReply:
    """Put blocked seats back on sale. Idempotent: a seat that is not blocked (free, held or
    sold) is left as it is (`unchanged`)."""
    command = UnblockSeats(show_id=show_id, seats=body.seats)
    future = await run_in_threadpool(_commands(container).unblock_seats, command, _manager(user))
    done = await outcome_of(future, container.settings.command_timeout_seconds)
    return SeatsUnblockedReply(
        show_id=show_id, unblocked=done.changed, unchanged=done.unchanged, position=done.position
    )


@router.put(
    "/{show_id}/sections/{code}/capacity",
    response_model=CapacityReply,
    responses={
        **MANAGED,
        409: {
            "description": "`capacity-below-taken`: fewer than the tickets already held or "
            f"sold in the section (`taken`, `held`, `sold` say how many); {SETTLED}"
        },
        422: {
            "description": "`unknown-section`: no such section; `not-general-admission`: the "
            "section is seated (block or unblock its seats instead); `invalid-show`: the "
            f"show would sell more than {MAX_SEATS_PER_SHOW} tickets; `validation-error`: "
            "not a whole number from 0"
        },
    },
)
async def change_capacity(
    show_id: UUID, code: Code, body: CapacityRequest, user: OrganizerUser, container: ContainerDep
) -> CapacityReply:
    """Set a general-admission section's capacity: raised, or lowered down to the tickets
    already held or sold in it (never below). The same capacity again changes nothing
    (`changed: false`)."""
    command = ChangeCapacity(show_id=show_id, section=code, capacity=body.capacity)
    future = await run_in_threadpool(_commands(container).change_capacity, command, _manager(user))
    done = await outcome_of(future, container.settings.command_timeout_seconds)
    return CapacityReply(
        show_id=show_id,
        section=code,
        capacity=done.capacity,
        changed=done.changed,
        position=done.position,
    )
