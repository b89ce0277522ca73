"""The waiting room of an announced on-sale (domain/waiting_room.py, infra/waiting_room.py).

`POST /shows/{id}/queue` gives a signed-in account its queue token for the show (one per account:
joining again answers the same token), `GET /shows/{id}/queue/{token}` says where it stands and,
once it is let in, hands out a short-lived admission that `POST /bookings` requires while the
waiting room is on (`require_admission`, 403 `queue-required`).

The gate itself (the admission check and what it knows of a show) is http_shell/admission_gate.py,
shared with the web pages' hold form."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from domain.waiting_room import WaitingRoomShow, place_of
from http_shell.admission_gate import Responses, waiting_room_show
from http_shell.container import Container
from http_shell.deps import (
    ContainerDep,
    CurrentUser,
    client_address,
    enforce_rate_limit,
    limit_key,
)
from http_shell.problems import ProblemError
from infra.waiting_room import (
    WaitingRoom,
    WaitingRoomUnavailableError,
)

router = APIRouter(prefix="/shows", tags=["waiting room"])

JOIN_RESPONSES: Responses = {
    200: {"description": "joined before: the account's token, as first given"},
    404: {"description": "`not-found`: no such show (or not in the catalog yet)"},
    409: {"description": "`no-queue`: the show has no waiting room, or its sale closed"},
    429: {"description": "`rate-limited`: too many joins from this address (`Retry-After`)"},
    503: {"description": "`unavailable`: the waiting room's store (Redis) is down"},
}
STATUS_RESPONSES: Responses = {
    404: {"description": "`not-found`: no such show, or no such token of the caller's"},
    409: {"description": "`no-queue`: the show has no waiting room (any more)"},
    503: {"description": "`unavailable`: the waiting room's store (Redis) is down"},
}


class QueueJoined(BaseModel):
    token: str = Field(description="the account's queue token for this show (keep it)")
    position: int | None = Field(
        description="slots still to go up to yours (1: next; 0: let in); null before the sale "
        "opens: the order of everyone who joined before is drawn at the opening"
    )
    opens_at: datetime = Field(description="when the sale opens and fans are let in")


class QueueStatus(QueueJoined):
    estimated_wait_seconds: int | None = Field(
        description="until you are let in, at the waiting room's rate (null before the opening)"
    )
    admitted: bool
    admission: str | None = Field(
        description="once let in, while the sale is open: send it as `admission` with "
        "POST /bookings (valid for this account and show only, until admission_expires_at)"
    )
    admission_expires_at: datetime | None


def _room(container: Container) -> WaitingRoom:
    if container.waiting_room is None:
        raise ProblemError(503, "unavailable", "the waiting room needs Redis", {"Retry-After": "5"})
    return container.waiting_room


def _unavailable() -> ProblemError:
    return ProblemError(503, "unavailable", "the waiting room is unavailable", {"Retry-After": "2"})


async def _queued_show(container: Container, show_id: UUID) -> WaitingRoomShow:
    show = await waiting_room_show(container, show_id)
    if show is None:
        raise ProblemError(404, "not-found", f"no show {show_id}")
    if show.rate is None or show.opens_at is None:
        raise ProblemError(409, "no-queue", "this show has no waiting room: book directly")
    return show


@router.post(
    "/{show_id}/queue",
    status_code=status.HTTP_201_CREATED,
    response_model=QueueJoined,
    responses=JOIN_RESPONSES,
)
async def join_queue(
    show_id: UUID, user: CurrentUser, container: ContainerDep, request: Request, response: Response
) -> QueueJoined:
    """Queue for the show's sale (any signed-in account; one token per account: joining again
    answers the first token, 200). Everyone who joins before `opens_at` is put in a random
    order at the opening (arriving earlier gives no advantage); later fans queue behind, in
    arrival order. Limited per client address."""
    enforce_rate_limit(
        container,
        f"queue-join:{limit_key(client_address(request))}",
        container.settings.rate_limit_queue_join_per_minute,
    )
    show = await _queued_show(container, show_id)
    room = _room(container)
    if not show.takes_joins(room.now()):
        raise ProblemError(409, "no-queue", "this show's sale is over (or it was cancelled)")
    try:
        joined = await run_in_threadpool(room.join, show, user.account_id)
    except WaitingRoomUnavailableError:
        raise _unavailable() from None
    if not joined.created:
        response.status_code = status.HTTP_200_OK
    assert show.rate is not None and show.opens_at is not None
    place = place_of(show.rate, show.opens_at, room.now(), joined.slot)
    return QueueJoined(token=joined.token, position=place.position, opens_at=show.opens_at)


@router.get("/{show_id}/queue/{token}", response_model=QueueStatus, responses=STATUS_RESPONSES)
async def queue_status(
    show_id: UUID, token: str, user: CurrentUser, container: ContainerDep
) -> QueueStatus:
    """Where the caller's token stands: position, estimated wait, and once let in (while the
    sale is open) a fresh admission to book with. Only the token's own account sees it."""
    show = await _queued_show(container, show_id)
    room = _room(container)
    try:
        ticket = await run_in_threadpool(room.ticket, show, token)
    except WaitingRoomUnavailableError:
        raise _unavailable() from None
    if ticket is None or ticket.account_id != user.account_id:
        raise ProblemError(404, "not-found", "no such queue token of yours for this show")
    assert show.rate is not None and show.opens_at is not None
    now = room.now()
    place = place_of(show.rate, show.opens_at, now, ticket.slot)
    admission, expires_at = None, None
    if place.admitted and show.is_active(now) and container.admissions is not None:
        admission, expires_at = container.admissions.issue(user.account_id, show_id, show.opens_at)
    return QueueStatus(
        token=token,
        position=place.position,
        opens_at=show.opens_at,
        estimated_wait_seconds=place.estimated_wait_seconds,
        admitted=place.admitted,
        admission=admission,
        admission_expires_at=expires_at,
    )
