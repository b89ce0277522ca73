"""The organiser console: `/organizer` (the dashboard of one's shows: tickets sold, revenue, a
sales chart, the waiting list), scheduling and editing a show, and opening, closing or
cancelling its sale after a confirmation step. The show's own page (seat blocks, poster,
presale codes, attendees) is web/organizer_show.py.

Pages read the read models only; form posts call the Container's command handlers as the
signed-in account (the handlers check it manages the show: organisers their own, admins all)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import Response

from commands.models import CancelShow, CloseSale, EditShow, OpenSale, ScheduleShow, ShowChanges
from commands.shows import Manager
from domain.account import Account
from web.commanding import Refused, called, is_admin, submitted
from web.csrf import check_csrf, read_form
from web.organizer_data import input_time, managed_shows, sales_chart
from web.organizer_forms import (
    SECTIONS_HELP,
    TIERS_HELP,
    edit_changes,
    new_show_form,
    tiers_text,
)
from web.organizer_show import after_command, managed, read_side
from web.organizer_show import router as show_router
from web.render import redirect, render
from web.session import ORGANISER_ROLES, PageError, container_of, require_account

router = APIRouter()

# What the confirmation page says for each status change (and its button).
ACTIONS: dict[str, tuple[str, str, str]] = {
    "open": ("Open the sale now?", "Fans can hold and buy tickets at once.", "Open the sale"),
    "close": (
        "Close the sale now?",
        "No new holds are taken; tickets already sold stay sold.",
        "Close the sale",
    ),
    "cancel": (
        "Cancel this show?",
        "Every booking is cancelled and every paid ticket refunded. This cannot be undone.",
        "Cancel the show",
    ),
}


def manager(account: Account) -> Manager:
    return Manager(account.id, is_admin(account))


def now() -> datetime:
    return datetime.now(UTC)


async def dashboard_rows(request: Request, account: Account) -> list[dict[str, Any]]:
    """The account's shows with their figures and a sparkline of their sales."""
    read = read_side(request)

    def load() -> list[dict[str, Any]]:
        with read.models.connection() as conn:
            rows = managed_shows(conn, account.id, is_admin(account))
            for row in rows:
                row["chart"] = sales_chart(
                    conn, row["show_id"], row["time_zone"], now(), width=160, height=36
                )
        return rows

    return await asyncio.to_thread(load)


@router.get("/organizer")
async def dashboard(request: Request) -> Response:
    account = await require_account(request, ORGANISER_ROLES)
    rows = await dashboard_rows(request, account)
    return await render(request, "organizer/dashboard.html", shows=rows)


@router.get("/organizer/rows")
async def dashboard_table(request: Request) -> Response:
    """The dashboard's table body alone: organizer.js refreshes it every few seconds."""
    account = await require_account(request, ORGANISER_ROLES)
    rows = await dashboard_rows(request, account)
    return await render(request, "organizer/_rows.html", shows=rows)


async def _form_page(request: Request, **context: Any) -> Response:
    context.setdefault("errors", [])
    return await render(
        request,
        "organizer/show_form.html",
        tiers_help=TIERS_HELP,
        sections_help=SECTIONS_HELP,
        **context,
    )


@router.get("/organizer/shows/new")
async def new_show(request: Request) -> Response:
    await require_account(request, ORGANISER_ROLES)
    values = {"currency": "EUR", "time_zone": "UTC", "max_tickets_per_customer": "10"}
    return await _form_page(request, values=values, editing=None)


@router.post("/organizer/shows")
async def schedule(request: Request) -> Response:
    account = await require_account(request, ORGANISER_ROLES)
    form = await read_form(request)
    check_csrf(request, form)
    typed = new_show_form({k: v for k, v in form.items() if isinstance(v, str)})
    errors = list(typed.errors)
    if not errors:
        try:
            command = ScheduleShow.model_validate(typed.body)
            container = container_of(request)
            done = await called(container.shows.schedule_show, command, None, account.id)
            url = after_command(f"/organizer/shows/{done.show_id}?done=created", done.position)
            return redirect(request, url)
        except Refused as refused:
            errors = refused.messages
        except ValueError as error:  # pydantic's ValidationError is one
            errors = [str(error)]
    return await _form_page(
        request, values=typed.values, editing=None, errors=errors, status_code=422
    )


def _edit_values(show: dict[str, Any]) -> dict[str, str]:
    zone = show["time_zone"]
    return {
        "title": show["title"],
        "description": show["description"],
        "category": show["category"],
        "venue": show["venue"],
        "time_zone": zone,
        "starts_at": input_time(show["starts_at"], zone),
        "sale_opens_at": input_time(show["sale_opens_at"], zone),
        "prices": tiers_text(show["price_tiers"], show["currency"]),
    }


@router.get("/organizer/shows/{show_id}/edit")
async def edit_form(request: Request, show_id: UUID) -> Response:
    _, show = await managed(request, show_id)
    return await _form_page(request, values=_edit_values(show), editing=show)


@router.post("/organizer/shows/{show_id}/edit")
async def edit(request: Request, show_id: UUID) -> Response:
    account, show = await managed(request, show_id)
    form = await read_form(request)
    check_csrf(request, form)
    typed = edit_changes({k: v for k, v in form.items() if isinstance(v, str)}, show)
    errors = list(typed.errors)
    if not errors:
        try:
            changes = ShowChanges.model_validate(typed.body)
            command = EditShow(show_id=show_id, changes=changes)
            container = container_of(request)
            edited = await submitted(
                container, container.shows.edit_show, command, manager(account)
            )
            url = after_command(f"/organizer/shows/{show_id}?done=edited", edited.position)
            return redirect(request, url)
        except Refused as refused:
            errors = refused.messages
        except ValueError as error:
            errors = [str(error)]
    return await _form_page(
        request, values=typed.values, editing=show, errors=errors, status_code=422
    )


@router.get("/organizer/shows/{show_id}/confirm/{action}")
async def confirm(request: Request, show_id: UUID, action: str) -> Response:
    """The confirmation step before a status change: a page with one button."""
    if action not in ACTIONS:
        raise PageError(404, "Not found", "There is no such action.")
    _, show = await managed(request, show_id)
    question, consequence, button = ACTIONS[action]
    return await render(
        request,
        "organizer/confirm.html",
        show=show,
        action=action,
        question=question,
        consequence=consequence,
        button=button,
    )


@router.post("/organizer/shows/{show_id}/status/{action}")
async def change_status(request: Request, show_id: UUID, action: str) -> Response:
    if action not in ACTIONS:
        raise PageError(404, "Not found", "There is no such action.")
    account, show = await managed(request, show_id)
    form = await read_form(request)
    check_csrf(request, form)
    container = container_of(request)
    commands = container.shows
    try:
        if action == "open":
            opening = OpenSale(show_id=show_id)
            position = await submitted(container, commands.open_sale, opening, manager(account))
        elif action == "close":
            close = CloseSale(show_id=show_id)
            position = await submitted(container, commands.close_sale, close, manager(account))
        else:
            cancel = CancelShow(show_id=show_id)
            position = await submitted(container, commands.cancel_show, cancel, manager(account))
    except Refused as refused:
        question, consequence, button = ACTIONS[action]
        return await render(
            request,
            "organizer/confirm.html",
            status_code=refused.status,
            show=show,
            action=action,
            question=question,
            consequence=consequence,
            button=button,
            errors=refused.messages,
        )
    return redirect(request, after_command(f"/organizer/shows/{show_id}?done={action}", position))


# After the routes above: `/organizer/shows/new` is not a show id.
router.include_router(show_router)
