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
from pydantic import BaseModel, Field

from http_shell.admission_gate import Responses, join_waiting_room, queued_show, standing_in
from http_shell.deps import ContainerDep, CurrentUser
from http_shell.problems import ProblemError

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
    show, joined, place = await join_waiting_room(container, request, show_id, user.account_id)
    if not joined.created:
        response.status_code = status.HTTP_200_OK
    assert show.opens_at is not None
    return QueueJoined(token=joined.token, position=place.position, opens_at=show.opens_at)


@router.get("/{show_id}/queue/{token}", response_model=QueueStatus, responses=STATUS_RESPONSES)
async def queue_status(
    show_id: UUID, token: str, user: CurrentUser, container: ContainerDep
) -> QueueStatus:
    """Where the caller's token stands: position, estimated wait, and once let in (while the
    sale is open) a fresh admission to book with. Only the token's own account sees it."""
    show = await queued_show(container, show_id)
    standing = await standing_in(container, show, user.account_id, token)
    if standing is None:
        raise ProblemError(404, "not-found", "no such queue token of yours for this show")
    assert show.opens_at is not None
    place = standing.place
    return QueueStatus(
        token=token,
        position=place.position,
        opens_at=show.opens_at,
        estimated_wait_seconds=place.estimated_wait_seconds,
        admitted=place.admitted,
        admission=standing.admission,
        admission_expires_at=standing.admission_expires_at,
    )
