"""The door: `/door` (the shows to scan), `/door/shows/{id}` (the scanner page for phones) and
`POST /door/shows/{id}/scan`, which the page's script calls for each scan.

The page posts to this web route (with the session cookie and the page's CSRF token) rather
than to the API: no token to hand to the browser. The route calls the same command
(`container.checkins.scan`) as `POST /api/v1/shows/{id}/checkins`, so the same rules hold:
the show's writer admits a ticket once, and the same `scan_id` replays its first answer. The
script queues scans in localStorage and retries them with their scan id until it gets an
answer, so a flaky connection admits nobody twice and loses no scan."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from commands.checkins import Scan, ScanAnswer, Scanner, ScanTicket, WrongShowError
from commands.errors import ForbiddenError, InvalidTicketSecretError, NotFoundError
from commands.venue_time import local
from domain.account import ADMIN, DOOR, Account
from domain.door import ADMITTED, ALREADY_ADMITTED
from domain.errors import UnknownTicketError
from web.commanding import Refused, submitted
from web.csrf import FormData, check_csrf, csrf_token, read_form
from web.organizer_data import door_shows, seat_label
from web.organizer_show import read_side
from web.render import render
from web.session import DOOR_ROLES, PageError, container_of, page_account, require_account

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store"}

# What the door staff read, big: the verdict, and the panel's colour (door.js).
VERDICTS = {
    ADMITTED: "ADMITTED",
    ALREADY_ADMITTED: "ALREADY IN",
    "void": "VOID",
    "invalid": "NOT A TICKET",
    "wrong-show": "WRONG SHOW",
    "unknown-ticket": "UNKNOWN TICKET",
}


def _everyone(account: Account) -> bool:
    """Door staff and admins scan every show; an organiser their own."""
    return account.role in (DOOR, ADMIN)


@router.get("/door")
async def door(request: Request) -> Response:
    account = await require_account(request, DOOR_ROLES)
    read = read_side(request)

    def load() -> list[dict[str, Any]]:
        with read.models.connection() as conn:
            return door_shows(conn, account.id, _everyone(account), datetime.now(UTC))

    shows = await asyncio.to_thread(load)
    return await render(request, "door/shows.html", shows=shows)


async def _door_show(request: Request, account: Account, show_id: UUID) -> dict[str, Any]:
    found = await asyncio.to_thread(read_side(request).models.show, show_id)
    if found is None:
        raise PageError(404, "No such show", "This show does not exist (or was deleted).")
    show = found[0]
    if not _everyone(account) and show["organizer_id"] != account.id:
        raise PageError(403, "Not your show", "Only door staff and the show's organiser scan it.")
    return show


@router.get("/door/shows/{show_id}")
async def scanner(request: Request, show_id: UUID) -> Response:
    account = await require_account(request, DOOR_ROLES)
    show = await _door_show(request, account, show_id)
    return await render(request, "door/scan.html", show=show, csrf=csrf_token(request))


Answer = tuple[int, dict[str, Any]]  # the HTTP status and what door.js (or the page) shows


def _answer(result: str, status: int = 200, **fields: Any) -> Answer:
    return status, {"result": result, "verdict": VERDICTS.get(result, result.upper()), **fields}


def _clock(moment: datetime | None, zone: str) -> str:
    return local(moment, zone).strftime("%H:%M") if moment is not None else ""


def _decided(answer: ScanAnswer, zone: str) -> Answer:
    seat = seat_label(answer.seat, answer.section)
    if answer.result == ADMITTED:
        detail = f"Welcome, {answer.holder_name}." + (
            " (answer repeated)" if answer.replayed else ""
        )
        return _answer(ADMITTED, seat=seat, holder=answer.holder_name, detail=detail)
    if answer.result == ALREADY_ADMITTED:
        detail = f"Came in at {answer.gate} at {_clock(answer.at, zone)}."
        return _answer(ALREADY_ADMITTED, seat=seat, holder=answer.holder_name, detail=detail)
    detail = "This ticket was cancelled, refunded or given to someone else."
    return _answer("void", seat=seat, holder=answer.holder_name, detail=detail)


@router.post("/door/shows/{show_id}/scan")
async def scan(request: Request, show_id: UUID) -> Response:
    """One scan, answered as JSON for door.js: 200 with `result` for every answer the door
    gives (admitted, already-admitted, void, invalid, wrong-show, unknown-ticket); 401/403
    when the page must be reloaded; 503 when the scan should be tried again (same scan id).
    A browser without JavaScript posts the manual form and gets the scanner page back."""
    account = await page_account(request)
    if account is None or account.role not in DOOR_ROLES:
        status, body = _answer("login", 401, detail="Your session ended: log in again.")
        return JSONResponse(body, status, headers=NO_STORE)
    show: dict[str, Any] | None = None
    try:
        form = await read_form(request)
        check_csrf(request, form)
        show = await _door_show(request, account, show_id)
        status, body = await _scan(request, account, show, form)
    except PageError as error:
        status, body = _answer("reload", error.status, detail=error.message)
    if show is not None and "application/json" not in request.headers.get("accept", ""):
        return await render(
            request,
            "door/scan.html",
            status_code=status,
            show=show,
            verdict=body,
            csrf=csrf_token(request),
        )
    return JSONResponse(body, status, headers=NO_STORE)


async def _scan(request: Request, account: Account, show: dict[str, Any], form: FormData) -> Answer:
    fields = {k: form.get(k) for k in ("secret", "gate", "scan_id")}
    fields["scan_id"] = fields["scan_id"] or uuid4().hex  # a form without the script
    try:
        body = Scan.model_validate(fields)
    except ValidationError:
        return _answer("invalid", detail="Scan the QR code, or type the code under it.")
    command = ScanTicket(show_id=show["show_id"], scan=body)
    container = container_of(request)
    if container.checkins is None:
        return _answer("retry", 503, detail="Check-in is not available here.")
    try:
        answer = await submitted(
            container, container.checkins.scan, command, Scanner(account.id, account.role)
        )
    except Refused as refused:
        return _refused(refused)
    return _decided(answer, show["time_zone"])


def _refused(refused: Refused) -> Answer:
    cause = refused.__cause__
    if isinstance(cause, InvalidTicketSecretError):
        return _answer("invalid", detail="This code is not a TicketBlitz ticket.")
    if isinstance(cause, WrongShowError):
        return _answer("wrong-show", detail="This ticket is for another show.")
    if isinstance(cause, UnknownTicketError | NotFoundError):
        return _answer("unknown-ticket", detail="This show never issued this ticket.")
    if isinstance(cause, ForbiddenError):
        return _answer("reload", 403, detail="You may not scan this show.")
    return _answer("retry", 503, detail=" ".join(refused.messages))
