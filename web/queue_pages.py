"""The waiting room in the fans' pages: joining a show's queue from the show page
(`POST /shows/{id}/queue`), the fan's place while they wait (`GET /shows/{id}/queue`, reloaded
every few seconds by static/queue.js) and, once they are let in, the show page's hold forms
carrying a fresh admission (`room_of`, which the show page calls).

The queue token stays on the server: the pages find the account's token through the
WaitingRoom (one per account and show) and never take one from a form or a URL. Joining,
places and admissions are http_shell/admission_gate.py's, as for the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from domain.account import Account
from domain.waiting_room import WaitingRoomShow
from http_shell.admission_gate import (
    join_waiting_room,
    standing_in,
    waiting_room_show,
)
from http_shell.problems import ProblemError
from infra.waiting_room import WaitingRoomUnavailableError
from web.csrf import check_csrf, read_form
from web.fan_support import fan_message, read_side, reading
from web.render import redirect, render
from web.session import PageError, container_of, page_account, require_account

router = APIRouter()
REFRESH_SECONDS = 5  # how often the waiting page asks again (queue.js)


@dataclass(frozen=True)
class Room:
    """A show's waiting room as one fan sees it (the show page's and the waiting page's)."""

    rate: int
    opens_at: datetime
    drawn: bool  # the opening has passed: places are known
    joined: bool
    position: int | None
    estimated_wait_seconds: int | None
    admission: str | None  # a fresh one, once let in while the sale is open


async def room_of(request: Request, show_id: UUID) -> Room | None:
    """The show's waiting room for the signed-in fan, while it takes joins (None: the show has
    none, or its sale is over; no Redis: no room is shown and the gate decides alone)."""
    container = container_of(request)
    if container.waiting_room is None:
        return None
    show = await waiting_room_show(container, show_id)
    now = container.waiting_room.now()
    if show is None or not show.takes_joins(now):
        return None
    assert show.rate is not None and show.opens_at is not None
    room = Room(show.rate, show.opens_at, now >= show.opens_at, False, None, None, None)
    account = await page_account(request)
    if account is None or account.role != "customer":
        return room
    try:
        return await _standing(request, show, account, room)
    except (ProblemError, WaitingRoomUnavailableError):
        return room  # the join button stays; joining says the room is busy


async def _standing(request: Request, show: WaitingRoomShow, account: Account, room: Room) -> Room:
    container = container_of(request)
    assert container.waiting_room is not None
    token = await run_in_threadpool(container.waiting_room.token_of, show.show_id, account.id)
    standing = None if token is None else await standing_in(container, show, account.id, token)
    if standing is None:
        return room
    place = standing.place
    return Room(
        room.rate,
        room.opens_at,
        room.drawn,
        True,
        place.position,
        place.estimated_wait_seconds,
        standing.admission,
    )


def wait_words(seconds: int | None) -> str:
    """The estimated wait as a fan reads it."""
    if seconds is None:
        return "known at the opening"
    if seconds < 60:
        return "less than a minute"
    minutes = -(-seconds // 60)
    if minutes < 120:
        return f"about {minutes} minutes"
    return f"about {round(minutes / 60)} hours"


async def _fan(request: Request) -> Account:
    account = await require_account(request)
    if account.role != "customer":
        raise PageError(
            403, "Fans only", "Only fan accounts can buy tickets; log in with a fan account."
        )
    return account


@router.post("/shows/{show_id}/queue")
async def join_queue(request: Request, show_id: UUID) -> Response:
    """Join the show's waiting room (joining again keeps the first place), then wait."""
    account = await _fan(request)
    form = await read_form(request)
    check_csrf(request, form)
    try:
        await join_waiting_room(container_of(request), request, show_id, account.id)
    except ProblemError as error:
        status, message = fan_message(error)
        if error.status == 409:
            message = "This show has no waiting room (any more): book on the show page."
        raise PageError(status, "Waiting room", message) from None
    return redirect(request, f"/shows/{show_id}/queue")


@router.get("/shows/{show_id}/queue")
async def waiting_page(request: Request, show_id: UUID) -> Response:
    """The fan's place in the waiting room; once let in, the show page (with its hold forms
    carrying the admission)."""
    await _fan(request)
    found = await reading(read_side(request).models.show, show_id)
    if found is None:
        raise PageError(404, "Show not found", "There is no such show (any more).")
    room = await room_of(request, show_id)
    if room is None or not room.joined or room.admission is not None:
        return redirect(request, f"/shows/{show_id}")
    return await render(
        request,
        "queue.html",
        show=found[0],
        room=room,
        wait=wait_words(room.estimated_wait_seconds),
        refresh_seconds=REFRESH_SECONDS,
    )
