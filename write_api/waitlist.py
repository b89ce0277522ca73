"""Waiting lists of sold-out shows: a customer joins (`POST /shows/{id}/waitlist`) and leaves
(`DELETE /waitlist/{entry_id}`). The offers are made by the waitlist-offers worker
(process_managers/waitlist_offers.py); the lists are read with `GET /me/waitlist` and, by the
organiser, `GET /shows/{id}/waitlist` (read_api/waitlist.py)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from commands.models import Code, Command
from commands.waitlist import JoinWaitingList, LeaveWaitingList, WaitlistCommands
from http_shell.container import Container
from http_shell.deps import ContainerDep, CurrentUser, CustomerUser, enforce_rate_limit
from write_api.waiting import outcome_of

router = APIRouter(tags=["waiting list"])


class JoinRequest(Command):
    quantity: int = Field(ge=1, le=10, strict=True, description="tickets wanted, 1 to 10")
    section: Code | None = Field(default=None, description="a section code; none: anywhere")


class JoinedReply(BaseModel):
    entry_id: UUID
    position: int = Field(description="place in the queue (1: next to be served)")
    log_position: int = Field(description="the log position of the entry (read-your-writes)")


def _commands(container: Container) -> WaitlistCommands:
    assert container.waitlist is not None  # built by ticketblitz.bootstrap
    return container.waitlist


@router.post(
    "/shows/{show_id}/waitlist",
    status_code=status.HTTP_201_CREATED,
    response_model=JoinedReply,
    responses={
        404: {"description": "`not-found`: no such show"},
        409: {
            "description": "`tickets-available`: the tickets can still be booked (book them); "
            "`already-waiting`: the customer is on this show's list already (`entry_id`); "
            "`sale-not-open`: the show is not on sale, has started or is cancelled; "
            "`ticket-limit-reached`: the customer has the show's most tickets already"
        },
        422: {
            "description": "`unknown-section`; `validation-error`: quantity not a whole number "
            "from 1 to 10, a malformed section, unknown fields"
        },
    },
)
async def join_waiting_list(
    show_id: UUID, body: JoinRequest, customer: CustomerUser, container: ContainerDep
) -> JoinedReply:
    """Join the show's waiting list (in a section, or anywhere) while what is asked for cannot
    be booked. When tickets come back, entries are offered them in the order they joined:
    seats are held for the fan (a booking with `offer: true`, status `held`) for
    `TICKETBLITZ_WAITLIST_OFFER_MINUTES` (30), and paid like any hold. An entry the freed
    tickets cannot serve is passed over for a later one that fits; it keeps its place."""
    enforce_rate_limit(
        container,
        f"booking:{customer.account_id}",
        container.settings.rate_limit_booking_per_minute,
    )
    command = JoinWaitingList(
        show_id=show_id,
        customer_id=customer.account_id,
        quantity=body.quantity,
        section=body.section,
    )
    future = await run_in_threadpool(_commands(container).join_waiting_list, command)
    joined = await outcome_of(future, container.settings.command_timeout_seconds)
    return JoinedReply(
        entry_id=joined.entry_id, position=joined.position, log_position=joined.log_position
    )


@router.delete(
    "/waitlist/{entry_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        403: {"description": "`forbidden`: not the entry's customer, nor an admin"},
        404: {"description": "`not-found`: no such entry"},
        409: {
            "description": "`illegal-transition`: the entry is over (fulfilled, lapsed, left) "
            "or its offer is paid"
        },
    },
)
async def leave_waiting_list(
    entry_id: UUID, user: CurrentUser, container: ContainerDep
) -> Response:
    """Leave the waiting list. An entry that was offered seats gives them back: the offer's
    booking is cancelled and its seats go to the next entry."""
    command = LeaveWaitingList(
        entry_id=entry_id, actor_id=user.account_id, actor_is_admin=user.is_admin
    )
    future = await run_in_threadpool(_commands(container).leave_waiting_list, command)
    await outcome_of(future, container.settings.command_timeout_seconds)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
