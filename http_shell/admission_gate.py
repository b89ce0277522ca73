"""The waiting room's gate: a hold on a show whose waiting room is on needs an admission.

Both the command API (`POST /bookings`) and the web pages' hold form call `require_admission`
before a hold is placed, so no door into the sale skips the queue. What the gate knows of a
show (its rate and sale window) comes from the catalog read model, cached for a second per
process (infra/waiting_room.py CachedShows): a dictionary lookup per booking, no load of the
Show aggregate in the show's writer. The catalog lags the log by milliseconds; a rate can only
be set before the sale opens (domain/show.py), so the lag never lets a booking through once
the room is on, and the check is by the clock against `sale_opens_at`, not by when the
SaleOpened event is projected.

Joining the waiting room and reading a fan's place in it (`join_waiting_room`, `standing_in`)
are here as well: the API (write_api/queue.py) and the web pages (web/queue_pages.py) both
call them, so the two doors into the queue follow one set of rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from domain.show import CANCELLED
from domain.waiting_room import QueuePlace, WaitingRoomShow, place_of
from http_shell.container import Container
from http_shell.deps import client_address, enforce_rate_limit, limit_key
from http_shell.problems import ProblemError
from infra.waiting_room import (
    AdmissionError,
    Joined,
    ShowLookup,
    WaitingRoom,
    WaitingRoomUnavailableError,
)

Responses = dict[int | str, dict[str, Any]]
QUEUE_REQUIRED: Responses = {
    403: {
        "description": "`queue-required`: the show's waiting room is on and the request has no "
        "valid `admission` for this account and show (missing, expired, another account's or "
        "show's, or not signed by us); or `forbidden` for a role that may not book"
    }
}


def catalog_lookup(container: Container) -> ShowLookup:
    """A show's waiting-room settings from the catalog read model (None: not in it)."""

    def lookup(show_id: UUID) -> WaitingRoomShow | None:
        read_side = container.read_side
        found = None if read_side is None else read_side.models.show(show_id)
        if found is None:
            return None
        row = found[0]
        return WaitingRoomShow(
            show_id=show_id,
            rate=row.get("queue_admits_per_minute"),
            opens_at=row["sale_opens_at"],
            closes_at=row["sale_closes_at"] or row["starts_at"],
            cancelled=row["status"] == CANCELLED,
        )

    return lookup


async def waiting_room_show(container: Container, show_id: UUID) -> WaitingRoomShow | None:
    shows = container.admissions.shows if container.admissions is not None else None
    if shows is None:
        return None
    fresh, show = shows.cached(show_id)
    if fresh:
        return show
    return await run_in_threadpool(shows.load, show_id)


async def require_admission(
    container: Container, account_id: UUID, show_id: UUID, admission: str | None
) -> None:
    """POST /bookings while the show's waiting room is on: only with a valid admission of this
    account for this show (403 `queue-required` saying what is wrong with it)."""
    admissions = container.admissions
    if admissions is None:
        return
    show = await waiting_room_show(container, show_id)
    if show is None or show.opens_at is None or not show.is_active(container_now(container)):
        return
    try:
        admissions.check(admission, account_id, show_id, show.opens_at)
    except AdmissionError as error:
        raise ProblemError(403, "queue-required", str(error)) from None


def container_now(container: Container) -> datetime:
    assert container.admissions is not None
    return container.admissions.now()


# --- joining the waiting room and a fan's place in it (the API's and the web pages') ---------


@dataclass(frozen=True)
class Standing:
    """Where an account's queue token stands, with a fresh admission once it is let in (while
    the sale is open)."""

    place: QueuePlace
    admission: str | None
    admission_expires_at: datetime | None


def waiting_room_of(container: Container) -> WaitingRoom:
    if container.waiting_room is None:
        raise ProblemError(503, "unavailable", "the waiting room needs Redis", {"Retry-After": "5"})
    return container.waiting_room


def room_unavailable() -> ProblemError:
    return ProblemError(503, "unavailable", "the waiting room is unavailable", {"Retry-After": "2"})


async def queued_show(container: Container, show_id: UUID) -> WaitingRoomShow:
    """The show, if it has a waiting room (404 `not-found`, 409 `no-queue` otherwise)."""
    show = await waiting_room_show(container, show_id)
    if show is None:
        raise ProblemError(404, "not-found", f"no show {show_id}")
    if show.rate is None or show.opens_at is None:
        raise ProblemError(409, "no-queue", "this show has no waiting room: book directly")
    return show


async def join_waiting_room(
    container: Container, request: Request, show_id: UUID, account_id: UUID
) -> tuple[WaitingRoomShow, Joined, QueuePlace]:
    """The account's token for the show (its first one if it joined before) and its place;
    joins are limited per client address (429 `rate-limited`)."""
    enforce_rate_limit(
        container,
        f"queue-join:{limit_key(client_address(request))}",
        container.settings.rate_limit_queue_join_per_minute,
    )
    show = await queued_show(container, show_id)
    room = waiting_room_of(container)
    if not show.takes_joins(room.now()):
        raise ProblemError(409, "no-queue", "this show's sale is over (or it was cancelled)")
    try:
        joined = await run_in_threadpool(room.join, show, account_id)
    except WaitingRoomUnavailableError:
        raise room_unavailable() from None
    assert show.rate is not None and show.opens_at is not None
    return show, joined, place_of(show.rate, show.opens_at, room.now(), joined.slot)


async def standing_in(
    container: Container, show: WaitingRoomShow, account_id: UUID, token: str
) -> Standing | None:
    """Where the token stands, if it is this account's (None: unknown, or another's)."""
    room = waiting_room_of(container)
    try:
        ticket = await run_in_threadpool(room.ticket, show, token)
    except WaitingRoomUnavailableError:
        raise room_unavailable() from None
    if ticket is None or ticket.account_id != account_id:
        return None
    assert show.rate is not None and show.opens_at is not None
    now = room.now()
    place = place_of(show.rate, show.opens_at, now, ticket.slot)
    if place.admitted and show.is_active(now) and container.admissions is not None:
        admission, expires_at = container.admissions.issue(account_id, show.show_id, show.opens_at)
        return Standing(place, admission, expires_at)
    return Standing(place, None, None)
