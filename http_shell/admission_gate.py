"""The waiting room's gate: a hold on a show whose waiting room is on needs an admission.

Both the command API (`POST /bookings`) and the web pages' hold form call `require_admission`
before a hold is placed, so no door into the sale skips the queue. What the gate knows of a
show (its rate and sale window) comes from the catalog read model, cached for a second per
process (infra/waiting_room.py CachedShows): a dictionary lookup per booking, no load of the
Show aggregate in the show's writer. The catalog lags the log by milliseconds; a rate can only
be set before the sale opens (domain/show.py), so the lag never lets a booking through once
the room is on, and the check is by the clock against `sale_opens_at`, not by when the
SaleOpened event is projected."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi.concurrency import run_in_threadpool

from domain.show import CANCELLED
from domain.waiting_room import WaitingRoomShow
from http_shell.container import Container
from http_shell.problems import ProblemError
from infra.waiting_room import AdmissionError, ShowLookup

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
