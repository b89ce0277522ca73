"""Organiser commands on shows: the show's organiser or an admin (403 `forbidden` for anyone
else; an organiser manages only the shows they scheduled)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Body, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from commands.models import (
    CancelShow,
    CloseSale,
    DeleteShow,
    EditShow,
    OpenSale,
    Reason,
    ScheduleShow,
    ShowChanges,
)
from commands.shows import Manager
from http_shell.container import Container
from http_shell.deps import ContainerDep, OrganizerUser
from infra.tokens import Principal
from write_api.waiting import outcome_of

router = APIRouter(prefix="/shows", tags=["shows"])

T = TypeVar("T")
C = TypeVar("C")

Responses = dict[int | str, dict[str, Any]]
MANAGED: Responses = {
    403: {"description": "`forbidden`: not the show's organiser, nor an admin"},
    404: {"description": "`not-found`: no such show, or it was deleted"},
}
TRANSITION: Responses = {409: {"description": "`illegal-transition`: not from its status"}}


class ShowCreated(BaseModel):
    show_id: UUID
    position: int


class ShowChanged(BaseModel):
    show_id: UUID
    status: str
    position: int


class CancellationReason(BaseModel):
    reason: Reason = "cancelled by the organiser"


def _manager(user: Principal) -> Manager:
    return Manager(user.account_id, user.is_admin)


async def _command(
    submit: Callable[[C, Manager | None], Future[T]],
    command: C,
    user: Principal,
    container: Container,
) -> T:
    """Submit a show command as the caller (its ownership check loads the show: off the event
    loop), then await its outcome, bounded in time."""
    future = await run_in_threadpool(submit, command, _manager(user))
    return await outcome_of(future, container.settings.command_timeout_seconds)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ShowCreated)
async def schedule_show(
    body: ScheduleShow, user: OrganizerUser, container: ContainerDep
) -> ShowCreated:
    """The caller (an organiser or an admin) becomes the show's organiser.
    `transfers_allowed` (default true): whether fans may give their tickets to others."""
    scheduled = await run_in_threadpool(container.shows.schedule_show, body, None, user.account_id)
    return ShowCreated(show_id=scheduled.show_id, position=scheduled.position)


@router.patch(
    "/{show_id}",
    response_model=ShowChanged,
    responses={
        **MANAGED,
        409: {"description": "`illegal-transition`: the show is cancelled or has started"},
        422: {
            "description": "an invalid body (empty, unknown or null fields, bad text), or "
            "`invalid-show`: an unknown price tier, a start in the past or more than ten years "
            "ahead, a sale window that does not keep opens < closes <= starts_at, a new window "
            "time in the past"
        },
    },
)
async def edit_show(
    show_id: UUID, body: ShowChanges, user: OrganizerUser, container: ContainerDep
) -> ShowChanged:
    """Change any of title, description, category, venue, starts_at (a reschedule),
    sale_opens_at (null: opened by hand), sale_closes_at and price_tiers (`[{code,
    price_cents}]`, existing tiers only; new holds pay the new price, held and sold tickets
    keep theirs) and time_zone (the venue's IANA zone: the times stay the same instants, shown
    in the new zone) and transfers_allowed (whether fans may give their tickets to others;
    tickets given before stay given). Each change is recorded as its own event; a value equal
    to the current one records nothing. A sale window that closed at the old start moves with
    a reschedule; one that closes later than the new start must be given too. The sale
    window's automatic opening and closing follow the new times."""
    command = EditShow(show_id=show_id, changes=body)
    edited = await _command(container.shows.edit_show, command, user, container)
    return ShowChanged(show_id=show_id, status=edited.status, position=edited.position)


@router.delete(
    "/{show_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        **MANAGED,
        409: {"description": "`cancel-instead`: the show has had a booking; cancel it instead"},
    },
)
async def delete_show(show_id: UUID, user: OrganizerUser, container: ContainerDep) -> Response:
    """Delete a show that never had a booking: it leaves the catalog (GET answers 404) and takes
    no more commands (404); its events stay in the log. A show that ever held a seat answers
    409 `cancel-instead`."""
    await _command(container.shows.delete_show, DeleteShow(show_id=show_id), user, container)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{show_id}/open-sale", response_model=ShowChanged, responses={**MANAGED, **TRANSITION}
)
async def open_sale(show_id: UUID, user: OrganizerUser, container: ContainerDep) -> ShowChanged:
    """Open the sale now (an override of the sale window)."""
    position = await _command(container.shows.open_sale, OpenSale(show_id=show_id), user, container)
    return ShowChanged(show_id=show_id, status="on_sale", position=position)


@router.post(
    "/{show_id}/close-sale", response_model=ShowChanged, responses={**MANAGED, **TRANSITION}
)
async def close_sale(show_id: UUID, user: OrganizerUser, container: ContainerDep) -> ShowChanged:
    """Close the sale now (an override of the sale window)."""
    command = CloseSale(show_id=show_id)
    position = await _command(container.shows.close_sale, command, user, container)
    return ShowChanged(show_id=show_id, status="sale_closed", position=position)


@router.post("/{show_id}/cancel", response_model=ShowChanged, responses={**MANAGED, **TRANSITION})
async def cancel_show(
    show_id: UUID,
    user: OrganizerUser,
    container: ContainerDep,
    body: Annotated[CancellationReason | None, Body()] = None,
) -> ShowChanged:
    """Cancel the show: its sale stops, every booking is cancelled and the paid ones refunded."""
    reason = (body or CancellationReason()).reason
    command = CancelShow(show_id=show_id, reason=reason)
    position = await _command(container.shows.cancel_show, command, user, container)
    return ShowChanged(show_id=show_id, status="cancelled", position=position)
