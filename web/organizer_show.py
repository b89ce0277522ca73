"""One show in the organiser console: `/organizer/shows/{id}` (figures, sales chart, the seat
map to block and unblock seats by clicking them, live during the on-sale; the poster; presale
codes; the attendee list as CSV) and the forms it posts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from commands.models import CreatePresaleCodes, PresaleCodesRequest, RevokePresaleCode
from commands.seat_blocks import BlockSeats, UnblockSeats
from commands.shows import Manager
from domain.account import Account
from infra.images import FORMATS, MAX_UPLOAD_BYTES, media_type
from projections.attendee_csv import COLUMNS, attendee_row, csv_chunk
from projections.read_side import ReadSide
from projections.registry import CATALOG, SALES, SEAT_MAP
from projections.reports import attendee_page
from web.commanding import Refused, called, is_admin, submitted
from web.csrf import check_csrf, read_form
from web.organizer_data import sales_chart, waiting_count
from web.render import redirect, render
from web.seatmap import STATUS_WORDS, layout, seat_map_data
from web.session import ORGANISER_ROLES, PageError, container_of, require_account

router = APIRouter()

MAX_CODES_SHOWN = 200
# The poster form's path and body limit (the image and the form around it): for the app
# factory's body-size limit, which is 256 KiB elsewhere.
POSTER_FORM_PATH = r"/organizer/shows/[^/]+/poster"
POSTER_FORM_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
SHOWN_MODELS = (CATALOG, SEAT_MAP, SALES)  # what the console's pages read
CSV_PAGE = 1000


DONE = {
    "open": "The sale is open.",
    "close": "The sale is closed.",
    "cancel": "The show is cancelled; its bookings are being refunded.",
    "created": "The show is scheduled.",
    "edited": "The show was changed.",
    "blocked": "The seats are off sale.",
    "unblocked": "The seats are back on sale.",
    "poster": "The poster was uploaded.",
    "codes": "The presale codes were created.",
    "revoked": "The presale code was revoked.",
}


def read_side(request: Request) -> ReadSide:
    read = container_of(request).read_side
    if read is None:
        raise PageError(503, "Unavailable", "This page is not served by this process.")
    return read


async def caught_up(read: ReadSide, after: str | None) -> None:
    """Read your writes: a page redirected to after a command (`?after=<its position>`)
    waits, bounded, until the read models it shows have passed that position."""
    if after is not None and after.isdigit():
        timeout = read.settings.read_wait_seconds
        await read.positions.wait_async(SHOWN_MODELS, int(after), timeout)


def after_command(url: str, position: int) -> str:
    """`url` of the page to show after a command that was written at `position`."""
    return f"{url}{'&' if '?' in url else '?'}after={position}"


async def managed(request: Request, show_id: UUID) -> tuple[Account, dict[str, Any]]:
    """The signed-in organiser and the show (from the catalog), if they manage it: else a
    login redirect, a 404 or a 403 page."""
    account = await require_account(request, ORGANISER_ROLES)
    read = read_side(request)
    if request.method == "GET":
        await caught_up(read, request.query_params.get("after"))
    found = await asyncio.to_thread(read.models.show, show_id)
    if found is None:
        raise PageError(404, "No such show", "This show does not exist (or was deleted).")
    show = found[0]
    if not is_admin(account) and show["organizer_id"] != account.id:
        raise PageError(403, "Not your show", "Only the show's organiser can manage it.")
    return account, show


async def _page_data(request: Request, show: dict[str, Any]) -> dict[str, Any]:
    read = read_side(request)
    show_id = show["show_id"]

    def load() -> dict[str, Any]:
        sales = read.models.show_sales(show_id) or {}
        with read.models.connection() as conn:
            chart = sales_chart(conn, show_id, show["time_zone"], datetime.now(UTC))
            waiting = waiting_count(conn, show_id)
        return {
            "sold": int(sales.get("tickets_sold", 0)),
            "held": int(sales.get("tickets_held", 0)),
            "revenue": int(sales.get("paid_cents", 0)) - int(sales.get("refunded_cents", 0)),
            "chart": chart,
            "waiting": waiting,
        }

    data = await asyncio.to_thread(load)
    seats = await seat_map_data(read, show_id)
    data["map"] = layout(seats, show["currency"]) if seats is not None else None
    return data


async def _codes(request: Request, account: Account, show_id: UUID) -> list[Any]:
    container = container_of(request)
    if container.presale is None:
        return []
    try:
        page = await submitted(
            container,
            container.presale.list_codes,
            show_id,
            Manager(account.id, is_admin(account)),
            0,
            MAX_CODES_SHOWN,
        )
    except Refused:
        return []
    return list(page.codes)


async def show_page(
    request: Request,
    account: Account,
    show: dict[str, Any],
    errors: list[str] | None = None,
    status_code: int = 200,
    typed: dict[str, str] | None = None,
) -> Response:
    done = request.query_params.get("done", "")
    return await render(
        request,
        "organizer/show.html",
        status_code=status_code,
        show=show,
        data=await _page_data(request, show),
        codes=await _codes(request, account, show["show_id"]),
        errors=errors or [],
        done=DONE.get(done),
        typed=typed or {},
        status_words=STATUS_WORDS,
    )


@router.get("/organizer/shows/{show_id}")
async def manage(request: Request, show_id: UUID) -> Response:
    account, show = await managed(request, show_id)
    return await show_page(request, account, show)


def _seat_ids(text: str) -> list[str]:
    ids = [part.strip().upper() for part in text.replace(",", " ").split()]
    return list(dict.fromkeys(i for i in ids if i))


@router.post("/organizer/shows/{show_id}/seats")
async def block_or_unblock(request: Request, show_id: UUID) -> Response:
    """Block (with a reason) or unblock the seats picked on the map (or typed)."""
    account, show = await managed(request, show_id)
    form = await read_form(request)
    check_csrf(request, form)
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    seats = _seat_ids(text.get("seats", ""))
    container = container_of(request)
    by = Manager(account.id, is_admin(account))
    unblock = text.get("action") == "unblock"
    try:
        if not seats:
            raise Refused(["Pick seats on the map first (or type them, e.g. A-1-3)."], 422)
        if unblock:
            free = UnblockSeats.model_validate({"show_id": show_id, "seats": seats})
            changed = await submitted(container, container.seat_blocks.unblock_seats, free, by)
        else:
            reason = text.get("reason", "").strip() or "held back by the organiser"
            blocked = BlockSeats.model_validate(
                {"show_id": show_id, "seats": seats, "reason": reason}
            )
            changed = await submitted(container, container.seat_blocks.block_seats, blocked, by)
    except Refused as refused:
        return await show_page(request, account, show, refused.messages, refused.status, text)
    except ValueError as error:
        return await show_page(request, account, show, [str(error)], 422, text)
    done = "unblocked" if unblock else "blocked"
    url = after_command(f"/organizer/shows/{show_id}?done={done}", changed.position)
    return redirect(request, url + "#seats")


@router.post("/organizer/shows/{show_id}/poster")
async def upload_poster(request: Request, show_id: UUID) -> Response:
    account, show = await managed(request, show_id)
    form = await read_form(request)
    check_csrf(request, form)
    image = form.get("poster")
    container = container_of(request)
    try:
        if not isinstance(image, UploadFile) or not image.filename:
            raise Refused(["Choose an image file first."], 422)
        kind = media_type(image.content_type or "")
        if kind not in FORMATS:
            raise Refused(["The poster must be a JPEG, PNG or WebP image."], 422)
        data = await image.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise Refused([f"The poster is larger than {MAX_UPLOAD_BYTES // 2**20} MiB."], 413)
        if container.posters is None:
            raise Refused(["Posters are not available here."], 503)
        stored = await called(
            container.posters.upload, show_id, data, kind, account.id, is_admin(account)
        )
    except Refused as refused:
        return await show_page(request, account, show, refused.messages, refused.status)
    url = after_command(f"/organizer/shows/{show_id}?done=poster", stored.position)
    return redirect(request, url)


@router.post("/organizer/shows/{show_id}/codes")
async def create_codes(request: Request, show_id: UUID) -> Response:
    """Presale codes: the ones typed (one a line or separated by spaces), or a number of
    generated ones; uses per code and an optional discount."""
    account, show = await managed(request, show_id)
    form = await read_form(request)
    check_csrf(request, form)
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    body: dict[str, Any] = {}
    typed = text.get("codes", "").split()
    count = text.get("count", "").strip()
    try:
        if typed:
            body["codes"] = typed
        elif count.isdigit():
            body["count"] = int(count)
        else:
            raise Refused(["Type codes, or say how many to generate."], 422)
        uses = text.get("max_uses", "").strip() or "1"
        discount = text.get("discount_percent", "").strip()
        if not uses.isdigit() or (discount and not discount.isdigit()):
            raise Refused(["Uses and discount are whole numbers."], 422)
        body["max_uses"] = int(uses)
        if discount:
            body["discount_percent"] = int(discount)
        request_body = PresaleCodesRequest.model_validate(body)
        command = CreatePresaleCodes(show_id=show_id, request=request_body)
        container = container_of(request)
        if container.presale is None:
            raise Refused(["Presale codes are not available here."], 503)
        by = Manager(account.id, is_admin(account))
        created = await submitted(container, container.presale.create_codes, command, by)
    except Refused as refused:
        return await show_page(request, account, show, refused.messages, refused.status, text)
    except ValueError as error:
        return await show_page(request, account, show, [str(error)], 422, text)
    url = after_command(f"/organizer/shows/{show_id}?done=codes", created.position)
    return redirect(request, url + "#codes")


@router.post("/organizer/shows/{show_id}/codes/revoke")
async def revoke_code(request: Request, show_id: UUID) -> Response:
    account, show = await managed(request, show_id)
    form = await read_form(request)
    check_csrf(request, form)
    code = form.get("code")
    container = container_of(request)
    try:
        command = RevokePresaleCode.model_validate({"show_id": show_id, "code": code})
        if container.presale is None:
            raise Refused(["Presale codes are not available here."], 503)
        by = Manager(account.id, is_admin(account))
        position = await submitted(container, container.presale.revoke_code, command, by)
    except Refused as refused:
        return await show_page(request, account, show, refused.messages, refused.status)
    except ValueError as error:
        return await show_page(request, account, show, [str(error)], 422)
    url = after_command(f"/organizer/shows/{show_id}?done=revoked", position)
    return redirect(request, url + "#codes")


# --- the attendee list (the same columns as GET /api/v1/shows/{id}/attendees.csv) ---


@router.get("/organizer/shows/{show_id}/attendees.csv")
async def attendees(request: Request, show_id: UUID) -> Response:
    """The show's bookings as CSV, streamed page by page from the read models."""
    await managed(request, show_id)
    read = read_side(request)

    def page(keyset: tuple[datetime, UUID] | None) -> list[dict[str, Any]]:
        with read.models.connection() as conn:
            return attendee_page(conn, show_id, keyset, CSV_PAGE)

    async def body() -> AsyncIterator[bytes]:
        yield csv_chunk([COLUMNS])
        rows = await asyncio.to_thread(page, None)
        while rows:
            yield csv_chunk([attendee_row(r) for r in rows])
            if len(rows) < CSV_PAGE:
                return
            rows = await asyncio.to_thread(page, (rows[-1]["placed_at"], rows[-1]["booking_id"]))

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="attendees.csv"',
            "Cache-Control": "no-store",
        },
    )
