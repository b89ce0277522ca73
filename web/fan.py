"""The fans' pages: the shows (search, category and date filters), a show with its seat map,
holding seats (picked on the map, or a quantity per section: best available) and joining the
waiting list of a sold-out show. Everything shown is read from the read side and its cache;
the forms call the container's command handlers."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID, uuid4

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from commands.errors import CommandError
from commands.models import BookingRequest, PlaceHold
from commands.waitlist import JoinWaitingList
from domain.account import Account
from domain.errors import DomainError
from http_shell.admission_gate import require_admission
from http_shell.problems import ProblemError
from projections.queries import ShowFilter
from web.csrf import FormData, check_csrf, read_form
from web.fan_support import fan_message, read_side, reading
from web.queue_pages import room_of
from web.render import redirect, render
from web.seatmap import layout, seat_map_data
from web.session import PageError, container_of, require_account

router = APIRouter()
PAGE_SIZE = 24
ON_SALE = "on_sale"


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@router.get("/")
async def home(
    request: Request, q: str = "", category: str = "", day_from: str = "", day_to: str = ""
) -> Response:
    """Shows by start time; `q` searches titles and descriptions, `category` filters, and
    `day_from`/`day_to` (YYYY-MM-DD, inclusive) bound the start date."""
    read = read_side(request)
    start, end = _day(day_from), _day(day_to)
    where = ShowFilter(
        text=q.replace("\x00", "").strip()[:200] or None,
        category=category.replace("\x00", "").strip()[:50] or None,
        starts_from=datetime.combine(start, time(), UTC) if start else None,
        starts_before=datetime.combine(end + timedelta(days=1), time(), UTC) if end else None,
    )
    shows = await reading(read.models.shows, where, PAGE_SIZE)
    for show in shows:
        show["price_from_cents"] = min(show["price_tiers"].values(), default=0)
    return await render(
        request,
        "home.html",
        shows=shows,
        q=q,
        category=category,
        day_from=start.isoformat() if start else "",
        day_to=end.isoformat() if end else "",
    )


async def _show_page(
    request: Request,
    show_id: UUID,
    error: str | None = None,
    status_code: int = 200,
    notice: str | None = None,
) -> Response:
    read = read_side(request)
    found = await reading(read.models.show, show_id)
    if found is None:
        raise PageError(404, "Show not found", "There is no such show (any more).")
    show, _ = found
    data = await seat_map_data(read, show_id)
    seat_map = layout(data or {"sections": []}, show["currency"])
    # While the show's waiting room takes joins, the hold forms are for fans let in (with
    # their admission); the others see the waiting room instead.
    room = await room_of(request, show_id)
    return await render(
        request,
        "show.html",
        status_code=status_code,
        show=show,
        map=seat_map,
        on_sale=show["status"] == ON_SALE,
        room=room,
        error=error,
        notice=notice,
    )


@router.get("/shows/{show_id}")
async def show_page(request: Request, show_id: UUID) -> Response:
    return await _show_page(request, show_id)


async def _customer(request: Request) -> Account:
    account = await require_account(request)
    if account.role != "customer":
        raise PageError(
            403, "Fans only", "Only fan accounts can buy tickets; log in with a fan account."
        )
    return account


def _booking_request(show_id: UUID, form: FormData) -> BookingRequest:
    seats = [s.strip() for s in str(form.get("seats", "")).split(",") if s.strip()]
    code = str(form.get("code", "")).strip() or None
    if seats:
        return BookingRequest(show_id=show_id, seats=seats, code=code)
    quantity_text = str(form.get("quantity", "")).strip()
    quantity = int(quantity_text) if quantity_text.isdigit() else 0
    section = str(form.get("section", "")).strip() or None
    return BookingRequest(show_id=show_id, section=section, quantity=quantity, code=code)


@router.post("/shows/{show_id}/hold")
async def hold(request: Request, show_id: UUID) -> Response:
    """Hold the seats picked on the map (or a quantity, best available): then checkout."""
    account = await _customer(request)
    form = await read_form(request)
    check_csrf(request, form)
    container = container_of(request)
    limit = container.settings.rate_limit_booking_per_minute
    if container.rate_limiter.check(f"booking:{account.id}", limit) is not None:
        return await _show_page(request, show_id, "Too many tries; please wait a moment.", 429)
    try:
        wanted = _booking_request(show_id, form)
    except ValidationError:
        message = "Pick one or more seats on the map (up to 10), or a number of tickets."
        return await _show_page(request, show_id, message, 422)
    command = PlaceHold(request=wanted, customer_id=account.id, booking_id=uuid4())
    admission = str(form.get("admission", "")).strip() or None
    try:
        # The same gate as POST /bookings: no door into the sale skips the waiting room.
        await require_admission(container, account.id, show_id, admission)
        async with asyncio.timeout(container.settings.command_timeout_seconds):
            placed = await container.bookings.place_hold_async(command)
    except (CommandError, DomainError, ProblemError, TimeoutError) as error:
        status, message = fan_message(error)
        return await _show_page(request, show_id, message, status)
    return redirect(request, f"/bookings/{placed.booking_id}?after={placed.position}")


@router.post("/shows/{show_id}/waitlist")
async def join_waitlist(request: Request, show_id: UUID) -> Response:
    """Join a sold-out show's waiting list for a number of tickets (in a section or any)."""
    account = await _customer(request)
    form = await read_form(request)
    check_csrf(request, form)
    container = container_of(request)
    if container.waitlist is None:
        raise PageError(503, "Unavailable", "Waiting lists are not available right now.")
    quantity_text = str(form.get("quantity", "")).strip()
    section = str(form.get("section", "")).strip() or None
    try:
        command = JoinWaitingList(
            show_id=show_id,
            customer_id=account.id,
            quantity=int(quantity_text) if quantity_text.isdigit() else 0,
            section=section,
        )
    except ValidationError:
        return await _show_page(request, show_id, "Ask for 1 to 10 tickets.", 422)
    try:
        future = container.waitlist.join_waiting_list(command)
        joined = await asyncio.wait_for(
            asyncio.wrap_future(future), container.settings.command_timeout_seconds
        )
    except (CommandError, DomainError, ProblemError, TimeoutError) as error:
        status, message = fan_message(error)
        return await _show_page(request, show_id, message, status)
    return await _show_page(
        request,
        show_id,
        notice=f"You are on the waiting list (number {joined.position}). We will e-mail you "
        "when tickets come back, and hold them for you for a while.",
    )
