"""Ticket transfers: `POST /tickets/{id}/transfer {email}` gives a ticket to another account.

The ticket's show (whose writer decides the transfer) is found in the tickets read model; a
ticket issued a moment ago that the read model has not reached yet is waited for, briefly.
Whether the caller holds the ticket, and whether it is still valid, is decided by the show's
writer on the door list itself, never on the read model.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal
from uuid import UUID

import psycopg
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field

from commands.transfers import ReceiverEmail, TransferCommands, TransferTicket
from http_shell.container import Container
from http_shell.deps import ContainerDep, CurrentUser
from http_shell.problems import ProblemError
from projections.read_side import ReadSide
from projections.registry import TICKETS
from write_api.waiting import outcome_of

router = APIRouter(tags=["tickets"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid access token (`unauthorized`)"},
    403: {"description": "`forbidden`: not the ticket's holder, nor an admin"},
    404: {"description": "`not-found`: no such ticket"},
    409: {
        "description": "`ticket-not-valid` (used, or void: refunded, cancelled or given away "
        "already; with `ticket_status`), `transfer-limit-reached` (the place changed hands "
        "`limit` times), `transfers-forbidden` (the show's organiser does not allow "
        "transfers), `sale-closed` (transfers end when the show's sale closes)"
    },
    422: {
        "description": "an invalid body (no e-mail address, a malformed one, one with line "
        "breaks, over 254 characters, unknown fields), or `transfer-to-self`: the address "
        "is the holder's own"
    },
    503: {"description": "the read models or the event store are unavailable (`unavailable`)"},
}


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: ReceiverEmail = Field(
        description="the receiver's e-mail: their account, or an invitation to register"
    )


class TransferAnswer(BaseModel):
    ticket_id: UUID = Field(description="the receiver's new ticket (its secret is theirs alone)")
    previous_ticket_id: UUID = Field(description="the ticket given away: void from now on")
    show_id: UUID
    seat: str | None = Field(description="the seat id; null for a general-admission place")
    section: str
    holder_name: str = Field(description="the receiver's name, or the invited address")
    invited: bool = Field(
        description="no account has the address yet: the ticket is theirs once they register "
        "with it"
    )
    status: Literal["valid"] = "valid"
    transfers: int = Field(description="how often this place changed hands, this one included")
    transfers_left: int = Field(description="how often the new ticket may still be transferred")
    replayed: bool = Field(
        description="the same transfer was made before (a retry); nothing changed"
    )
    position: int = Field(description="the log position of the transfer (read-your-writes)")


def _transfers(container: Container) -> TransferCommands:
    if container.transfers is None:
        raise ProblemError(503, "unavailable", "ticket transfers are not configured")
    return container.transfers


def _read_side(container: Container) -> ReadSide:
    if container.read_side is None:
        raise ProblemError(503, "unavailable", "the tickets read model is not configured")
    return container.read_side


def _show_of(read: ReadSide, ticket_id: UUID) -> UUID | None:
    with read.models.connection() as conn:
        row = conn.execute(
            "SELECT show_id FROM read.tickets WHERE ticket_id = %s", (ticket_id,)
        ).fetchone()
    return None if row is None else UUID(str(row[0]))


async def show_of_ticket(read: ReadSide, ticket_id: UUID) -> UUID:
    """The ticket's show, from the read model; one not there yet is waited for until the
    read model has reached the end of the log (bounded), then it is a 404."""
    try:
        show_id = await asyncio.to_thread(_show_of, read, ticket_id)
        if show_id is None:
            head = await asyncio.to_thread(read.store.head_position)
            await read.positions.wait_async([TICKETS], head, read.settings.read_wait_seconds)
            show_id = await asyncio.to_thread(_show_of, read, ticket_id)
    except (psycopg.OperationalError, PoolTimeout) as error:
        raise ProblemError(
            503, "unavailable", "the read models are unavailable", {"Retry-After": "2"}
        ) from error
    if show_id is None:
        raise ProblemError(404, "not-found", "ticket not found")
    return show_id


@router.post("/tickets/{ticket_id}/transfer", response_model=TransferAnswer, responses=RESPONSES)
async def transfer_ticket(
    ticket_id: UUID, body: TransferRequest, user: CurrentUser, container: ContainerDep
) -> TransferAnswer:
    """Give a valid ticket to another account, named by its e-mail: the ticket's holder, or an
    admin (a support desk's action). The ticket is void at once (its secret is refused at
    the door) and a new ticket, with a new secret, is the receiver's: in their
    `GET /me/tickets`, with an e-mail (`ticket.transferred`). An address nobody registered yet
    is an invitation: the ticket is held for the account that address registers as, and is
    theirs from the moment they register. The booking, and its money, stay the buyer's: a
    refund of the booking voids the transferred ticket too.

    Allowed while the show's sale is open (409 `sale-closed` after it closes, at the latest at
    the show's start), unless the organiser forbids transfers for the show (409
    `transfers-forbidden`), at most `TICKETBLITZ_MAX_TICKET_TRANSFERS` (3) times per place
    (409 `transfer-limit-reached`). The same transfer again (a retry) answers the same
    ticket with `replayed: true`."""
    transfers = _transfers(container)
    show_id = await show_of_ticket(_read_side(container), ticket_id)
    command = TransferTicket(
        ticket_id=ticket_id,
        show_id=show_id,
        email=body.email,
        actor_id=user.account_id,
        actor_is_admin=user.is_admin,
    )
    future = await run_in_threadpool(transfers.transfer_ticket, command)
    done = await outcome_of(future, container.settings.command_timeout_seconds)
    return TransferAnswer(
        ticket_id=done.ticket_id,
        previous_ticket_id=done.previous_ticket_id,
        show_id=done.show_id,
        seat=done.seat,
        section=done.section,
        holder_name=done.holder_name,
        invited=done.invited,
        transfers=done.transfers,
        transfers_left=max(0, transfers.max_transfers - done.transfers),
        replayed=done.replayed,
        position=done.position,
    )
