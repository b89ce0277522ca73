"""What a fan holds, over HTTP: a ticket's QR code (SVG, PNG) and a booking's tickets as a
PDF, rendered from the read models (`read.tickets`, `read.shows`, `read.bookings`) with the
secrets signed on the spot (infra/ticket_signing.py) and drawn by infra/ticket_documents.py.

The QR code is the ticket: whoever shows it is admitted (once), so it is never public. A
ticket's code is for its holder, the show's organiser and admins; a booking's PDF for its
customer and anyone a ticket of it was given to (the tickets they hold: a ticket given away is
the new holder's), the show's organiser and admins (every valid or used ticket). Void tickets
are never drawn.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from psycopg.rows import dict_row

from commands.ports import TicketSigner
from domain.door import VOID
from http_shell.container import Container
from http_shell.deps import ContainerDep, CurrentUser
from http_shell.problems import ProblemError
from infra.ticket_documents import ShowInfo, TicketInfo, qr_png, qr_svg, tickets_pdf
from infra.tokens import Principal
from projections.read_side import ReadSide
from projections.registry import BOOKINGS, CATALOG, TICKETS
from projections.tickets import tickets_of_booking
from read_api.deps import After, ReadSideDep, caught_up, query

router = APIRouter(tags=["tickets"])

PRIVATE = {"Cache-Control": "private, no-store"}  # a ticket, not for shared caches
SHOW_COLUMNS = "show_id, title, venue, starts_at, time_zone, organizer_id"
COMMON: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid access token"},
    503: {"description": "the read models have not reached `after` yet (`not-caught-up`)"},
}
QR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON,
    403: {"description": "neither the ticket's holder, the show's organiser nor an admin"},
    404: {"description": "no such ticket (`not-found`)"},
    409: {"description": "the ticket is void (cancelled, refunded or given away): `ticket-void`"},
}
PDF_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON,
    200: {
        "description": "one A4 page per ticket: show, venue, local start, place, holder, QR code",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    },
    403: {"description": "neither the booking's customer, the show's organiser nor an admin"},
    404: {"description": "no such booking (`not-found`)"},
    409: {
        "description": "no valid ticket to print: the booking is not confirmed, was cancelled "
        "or refunded, or its tickets were given away (`no-tickets`)"
    },
}


def _signer(container: Container) -> TicketSigner:
    signer: TicketSigner | None = container.ticket_signer
    if signer is None:
        raise ProblemError(503, "unavailable", "ticket signing is not configured")
    return signer


def _show(read: ReadSide, show_id: UUID) -> dict[str, Any] | None:
    with read.models.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        row: dict[str, Any] | None = cur.execute(
            f"SELECT {SHOW_COLUMNS} FROM read.shows WHERE show_id = %s", (show_id,)
        ).fetchone()
        return row


def _ticket(read: ReadSide, ticket_id: UUID) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The ticket and its show (None if either is unknown)."""
    with read.models.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        ticket = cur.execute(
            "SELECT ticket_id, show_id, booking_id, seat, section, holder_id, status "
            "FROM read.tickets WHERE ticket_id = %s",
            (ticket_id,),
        ).fetchone()
    if ticket is None:
        return None
    show = _show(read, ticket["show_id"])
    return None if show is None else (ticket, show)


def _organises(user: Principal, show: dict[str, Any]) -> bool:
    """An admin, or the show's organiser (while an organiser)."""
    if user.is_admin:
        return True
    return user.is_organizer and show["organizer_id"] == user.account_id


def _show_info(show: dict[str, Any]) -> ShowInfo:
    return ShowInfo(
        show["show_id"], show["title"], show["venue"], show["starts_at"], show["time_zone"]
    )


async def _secret_of(
    ticket_id: UUID, user: Principal, read: ReadSide, container: Container, after: int | None
) -> str:
    """The ticket's secret, if the caller may see it."""
    await caught_up(read, [TICKETS, CATALOG], after)
    found = await query(_ticket, read, ticket_id)
    if found is None:
        raise ProblemError(404, "not-found", "ticket not found")
    ticket, show = found
    if ticket["holder_id"] != user.account_id and not _organises(user, show):
        raise ProblemError(
            403, "forbidden", "only the ticket's holder, the show's organiser or an admin"
        )
    if ticket["status"] == VOID:
        raise ProblemError(409, "ticket-void", "this ticket is void: it admits nobody")
    place = ticket["seat"] if ticket["seat"] is not None else ticket["section"]
    return _signer(container).sign(ticket["ticket_id"], ticket["show_id"], place)


@router.get(
    "/tickets/{ticket_id}/qr.svg",
    response_class=Response,
    responses={
        **QR_RESPONSES,
        200: {"description": "the QR code", "content": {"image/svg+xml": {}}},
    },
)
async def ticket_qr_svg(
    ticket_id: UUID,
    user: CurrentUser,
    read: ReadSideDep,
    container: ContainerDep,
    after: After = None,
) -> Response:
    """The ticket's QR code (SVG): its signed secret, which the door scans. For the ticket's
    holder, the show's organiser and admins; 409 `ticket-void` once it is void."""
    secret = await _secret_of(ticket_id, user, read, container, after)
    return Response(qr_svg(secret), media_type="image/svg+xml", headers=PRIVATE)


@router.get(
    "/tickets/{ticket_id}/qr.png",
    response_class=Response,
    responses={**QR_RESPONSES, 200: {"description": "the QR code", "content": {"image/png": {}}}},
)
async def ticket_qr_png(
    ticket_id: UUID,
    user: CurrentUser,
    read: ReadSideDep,
    container: ContainerDep,
    after: After = None,
) -> Response:
    """The ticket's QR code (PNG, 8 pixels per module): its signed secret, which the door
    scans. For the ticket's holder, the show's organiser and admins; 409 `ticket-void` once
    it is void."""
    secret = await _secret_of(ticket_id, user, read, container, after)
    png = await run_in_threadpool(qr_png, secret)
    return Response(png, media_type="image/png", headers=PRIVATE)


def _booking_tickets(
    read: ReadSide, booking_id: UUID
) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]] | None:
    """The booking, its show and its tickets (None for an unknown booking)."""
    with read.models.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        booking = cur.execute(
            "SELECT booking_id, show_id, customer_id, status, paid_cents, refunded_cents, "
            "currency, updated_at FROM read.bookings WHERE booking_id = %s",
            (booking_id,),
        ).fetchone()
        if booking is None:
            return None
        tickets = tickets_of_booking(conn, booking_id)
    return booking, _show(read, booking["show_id"]), tickets


@router.get("/bookings/{booking_id}/tickets.pdf", response_class=Response, responses=PDF_RESPONSES)
async def booking_tickets_pdf(
    booking_id: UUID,
    user: CurrentUser,
    read: ReadSideDep,
    container: ContainerDep,
    after: After = None,
) -> Response:
    """The booking's tickets as a PDF, one A4 page each: the show's title, venue and start on
    the venue's clock (its time zone), the seat or section, the holder, the QR code and the
    booking's id. For the booking's customer and whoever was given one of its tickets (the
    tickets they hold), the show's organiser and admins (every valid or used ticket); void
    tickets are left out, and 409 `no-tickets` when none is left."""
    await caught_up(read, [TICKETS, BOOKINGS, CATALOG], after)
    found = await query(_booking_tickets, read, booking_id)
    if found is None:
        raise ProblemError(404, "not-found", "booking not found")
    booking, show, rows = found
    organises = show is not None and _organises(user, show)
    holds = any(r["holder_id"] == user.account_id for r in rows)
    if booking["customer_id"] != user.account_id and not organises and not holds:
        raise ProblemError(
            403, "forbidden", "only the booking's customer, the show's organiser or an admin"
        )
    rows = [
        r for r in rows if r["status"] != VOID and (organises or r["holder_id"] == user.account_id)
    ]
    if show is None or not rows:
        raise ProblemError(409, "no-tickets", "this booking has no valid ticket to print")
    signer = _signer(container)
    tickets = [
        TicketInfo(
            r["ticket_id"],
            booking_id,
            r["seat"],
            r["section"],
            r["holder_name"],
            signer.sign(r["ticket_id"], r["show_id"], r["seat"] or r["section"]),
        )
        for r in rows
    ]
    paid = booking["paid_cents"] - booking["refunded_cents"]
    pdf = await run_in_threadpool(
        tickets_pdf, _show_info(show), tickets, booking["updated_at"], (paid, booking["currency"])
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            **PRIVATE,
            "Content-Disposition": f'attachment; filename="tickets-{booking_id}.pdf"',
        },
    )
