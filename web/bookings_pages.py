"""A fan's booking: checkout while it is held (the card form, a countdown to the hold's end),
its status live until it is settled (htmx polls a fragment), its tickets with QR codes and the
PDF, cancelling it; and `/me`, the fan's bookings, tickets and waiting-list entries."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from markupsafe import Markup
from psycopg.rows import dict_row
from starlette.responses import Response

from commands.errors import CommandError
from commands.models import CancelBooking, PayBooking
from domain.account import Account
from domain.booking import CONFIRMED, HELD, PAYMENT_REQUESTED
from domain.door import VOID
from domain.errors import DomainError
from http_shell.problems import ProblemError
from infra.ticket_documents import ShowInfo, TicketInfo, qr_svg, tickets_pdf
from projections.read_side import ReadSide
from projections.registry import BOOKINGS, TICKETS
from projections.tickets import tickets_of_booking
from projections.waitlist import entries_of_customer
from web.card_setup import CardSetupError, new_card_setup, publishable_key
from web.csrf import check_csrf, read_form
from web.fan_support import fan_message, read_side, reading
from web.render import redirect, render
from web.seatmap import seat_label
from web.session import PageError, container_of, require_account

router = APIRouter()
UNSETTLED = (HELD, PAYMENT_REQUESTED, "paid")
SHOW_COLUMNS = "show_id, title, venue, starts_at, time_zone, organizer_id, status"


def _load(read: ReadSide, booking_id: UUID) -> dict[str, Any] | None:
    """The booking with its show and tickets (None if unknown)."""
    with read.models.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        booking = cur.execute(
            "SELECT * FROM read.bookings WHERE booking_id = %s", (booking_id,)
        ).fetchone()
        if booking is None:
            return None
        show = cur.execute(
            f"SELECT {SHOW_COLUMNS} FROM read.shows WHERE show_id = %s", (booking["show_id"],)
        ).fetchone()
        tickets = tickets_of_booking(conn, booking_id)
    return {"booking": booking, "show": show, "tickets": tickets}


def _qr(request: Request, ticket: dict[str, Any]) -> Markup:
    """The ticket's QR code as an image (a data: URI of its SVG; the CSP allows data: images)."""
    signer = container_of(request).ticket_signer
    if signer is None:
        return Markup("")
    place = ticket["seat"] if ticket["seat"] is not None else ticket["section"]
    secret = signer.sign(ticket["ticket_id"], ticket["show_id"], place)
    encoded = base64.b64encode(qr_svg(secret)).decode()
    return Markup('<img src="data:image/svg+xml;base64,{}" alt="QR code of the ticket">').format(
        encoded
    )


async def _booking_of(
    request: Request, booking_id: UUID, account: Account, after: int | None = None
) -> dict[str, Any]:
    read = read_side(request)
    if after is not None:
        await read.positions.wait_async([BOOKINGS, TICKETS], after, read.settings.read_wait_seconds)
    found = await reading(_load, read, booking_id)
    # Someone else's booking is "not found": its existence is nobody else's business.
    if found is None or (found["booking"]["customer_id"] != account.id and not account.is_admin):
        raise PageError(404, "Booking not found", "There is no such booking in your account.")
    booking = found["booking"]
    found["seat_labels"] = [seat_label(s) for s in booking["seats"]]
    found["general"] = booking["general"]
    mine = [t for t in found["tickets"] if t["holder_id"] == account.id and t["status"] != VOID]
    found["tickets"] = [{**t, "qr": _qr(request, t), "label": _place(t)} for t in mine]
    # Live until settled, and until a confirmed booking's tickets are issued.
    found["live"] = booking["status"] in UNSETTLED or (
        booking["status"] == CONFIRMED and not found["tickets"]
    )
    return found


def _place(ticket: dict[str, Any]) -> str:
    if ticket["seat"]:
        return seat_label(ticket["seat"])
    return f"Section {ticket['section']}, standing"


@router.get("/bookings/{booking_id}")
async def booking_page(
    request: Request, booking_id: UUID, after: int | None = None, error: str | None = None
) -> Response:
    account = await require_account(request)
    found = await _booking_of(request, booking_id, account, after)
    setup = None
    if found["booking"]["status"] == HELD:
        try:
            settings = container_of(request).settings
            setup = await asyncio.to_thread(new_card_setup, settings)
        except CardSetupError:
            error = error or "Card payments are unavailable for a moment; please reload."
    return await render(
        request,
        "booking.html",
        **found,
        setup_secret=setup,
        publishable_key=publishable_key(),
        error=_known_error(error),
    )


ERRORS = {
    "declined": "Your card was declined. Nothing was charged and your seats were released. "
    "Pick seats again to try another card.",
}


def _known_error(code: str | None) -> str | None:
    """Only our own messages are shown from the URL (no text injected through a link)."""
    if code is None:
        return None
    return ERRORS.get(code, "Card payments are unavailable for a moment; please reload.")


@router.get("/bookings/{booking_id}/status")
async def booking_status(request: Request, booking_id: UUID) -> Response:
    """The live part of the booking page (htmx polls it while the booking is unsettled)."""
    account = await require_account(request)
    found = await _booking_of(request, booking_id, account)
    return await render(request, "_booking_status.html", **found)


@router.post("/bookings/{booking_id}/pay")
async def pay(request: Request, booking_id: UUID) -> Response:
    """Pay with the PaymentMethod the card form made (Stripe.js): confirmed, or declined."""
    account = await require_account(request)
    form = await read_form(request)
    check_csrf(request, form)
    container = container_of(request)
    try:
        command = PayBooking(
            booking_id=booking_id,
            payment_method=str(form.get("payment_method", "")),
            actor_id=account.id,
            actor_is_admin=account.is_admin,
        )
    except ValueError:
        return await booking_page(request, booking_id, error="card")
    try:
        step = await asyncio.to_thread(container.payments.pay, command)
    except (CommandError, DomainError, ProblemError, TimeoutError) as error:
        status, message = fan_message(error)
        found = await _booking_of(request, booking_id, account)
        return await render(request, "booking.html", status_code=status, **found, error=message)
    return redirect(request, f"/bookings/{booking_id}?after={step.position}")


@router.post("/bookings/{booking_id}/cancel")
async def cancel(request: Request, booking_id: UUID) -> Response:
    account = await require_account(request)
    form = await read_form(request)
    check_csrf(request, form)
    container = container_of(request)
    command = CancelBooking(
        booking_id=booking_id, actor_id=account.id, actor_is_admin=account.is_admin
    )
    try:
        future = await asyncio.to_thread(container.bookings.cancel_booking, command)
        position = await asyncio.wait_for(
            asyncio.wrap_future(future), container.settings.command_timeout_seconds
        )
    except (CommandError, DomainError, ProblemError, TimeoutError) as error:
        status, message = fan_message(error)
        found = await _booking_of(request, booking_id, account)
        return await render(request, "booking.html", status_code=status, **found, error=message)
    return redirect(request, f"/bookings/{booking_id}?after={position}")


@router.get("/bookings/{booking_id}/tickets.pdf")
async def tickets_document(request: Request, booking_id: UUID) -> Response:
    """The fan's tickets of the booking as a PDF (one page each, with the QR code)."""
    account = await require_account(request)
    found = await _booking_of(request, booking_id, account)
    show, booking = found["show"], found["booking"]
    signer = container_of(request).ticket_signer
    if show is None or signer is None or not found["tickets"]:
        raise PageError(409, "No tickets", "This booking has no valid ticket to print.")
    tickets = [
        TicketInfo(
            t["ticket_id"],
            booking_id,
            t["seat"],
            t["section"],
            t["holder_name"],
            signer.sign(t["ticket_id"], t["show_id"], t["seat"] or t["section"]),
        )
        for t in found["tickets"]
    ]
    info = ShowInfo(
        show["show_id"], show["title"], show["venue"], show["starts_at"], show["time_zone"]
    )
    paid = (booking["paid_cents"] - booking["refunded_cents"], booking["currency"])
    pdf = await asyncio.to_thread(tickets_pdf, info, tickets, booking["updated_at"], paid)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Cache-Control": "private, no-store",
            "Content-Disposition": 'attachment; filename="tickets.pdf"',
        },
    )


def _mine(read: ReadSide, account_id: UUID) -> dict[str, Any]:
    with read.models.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        bookings = cur.execute(
            "SELECT b.booking_id, b.status, b.seats, b.general, b.quantity, b.amount_cents, "
            "b.currency, b.placed_at, s.title, s.venue, s.starts_at, s.time_zone "
            "FROM read.bookings b LEFT JOIN read.shows s ON s.show_id = b.show_id "
            "WHERE b.customer_id = %s ORDER BY b.placed_at DESC LIMIT 50",
            (account_id,),
        ).fetchall()
        waiting = entries_of_customer(conn, account_id, 50)
    return {"bookings": bookings, "waiting": waiting}


@router.get("/me")
async def me(request: Request) -> Response:
    account = await require_account(request)
    mine = await reading(_mine, read_side(request), account.id)
    return await render(request, "me.html", **mine, confirmed=CONFIRMED)
