"""Organiser commands on shows (admin only)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from commands.models import CancelShow, CloseSale, OpenSale, Reason, ScheduleShow
from http_shell.deps import AdminUser, ContainerDep, OrganizerUser
from write_api.waiting import outcome_of

router = APIRouter(prefix="/shows", tags=["shows"])


class ShowCreated(BaseModel):
    show_id: UUID
    position: int


class ShowChanged(BaseModel):
    show_id: UUID
    status: str
    position: int


class CancellationReason(BaseModel):
    reason: Reason = "cancelled by the organiser"


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ShowCreated)
async def schedule_show(
    body: ScheduleShow, user: OrganizerUser, container: ContainerDep
) -> ShowCreated:
    """The caller (an organiser or an admin) becomes the show's organiser."""
    scheduled = await run_in_threadpool(container.shows.schedule_show, body, None, user.account_id)
    return ShowCreated(show_id=scheduled.show_id, position=scheduled.position)


@router.post("/{show_id}/open-sale", response_model=ShowChanged)
async def open_sale(show_id: UUID, _: AdminUser, container: ContainerDep) -> ShowChanged:
    future = container.shows.open_sale(OpenSale(show_id=show_id))
    position = await outcome_of(future, container.settings.command_timeout_seconds)
    return ShowChanged(show_id=show_id, status="on_sale", position=position)


@router.post("/{show_id}/close-sale", response_model=ShowChanged)
async def close_sale(show_id: UUID, _: AdminUser, container: ContainerDep) -> ShowChanged:
    future = container.shows.close_sale(CloseSale(show_id=show_id))
    position = await outcome_of(future, container.settings.command_timeout_seconds)
    return ShowChanged(show_id=show_id, status="sale_closed", position=position)


@router.post("/{show_id}/cancel", response_model=ShowChanged)
async def cancel_show(
    show_id: UUID,
    _: AdminUser,
    container: ContainerDep,
    body: Annotated[CancellationReason | None, Body()] = None,
) -> ShowChanged:
    reason = (body or CancellationReason()).reason
    future = container.shows.cancel_show(CancelShow(show_id=show_id, reason=reason))
    position = await outcome_of(future, container.settings.command_timeout_seconds)
    return ShowChanged(show_id=show_id, status="cancelled", position=position)
