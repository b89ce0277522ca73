"""A booking's tickets with their secrets (what each ticket's QR code holds), from the tickets
read model (projections/tickets.py); secrets are signed on the fly (infra/ticket_signing.py)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from commands.ports import TicketSigner
from http_shell.deps import CurrentUser
from http_shell.problems import ProblemError
from infra.tokens import Principal
from projections.registry import BOOKINGS, REPORTS, TICKETS
from projections.reports import report_show
from projections.tickets import tickets_of_booking
from read_api.deps import After, ReadSideDep, caught_up, query
from read_api.models import POSITION

router = APIRouter(tags=["tickets"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid access token (`unauthorized`)"},
    403: {"description": "not the booking's customer, show organiser or admin (`forbidden`)"},
    404: {"description": "no such booking (`not-found`)"},
    503: {"description": "the read models have not reached `after` yet (`not-caught-up`)"},
}


class TicketPublic(BaseModel):
    ticket_id: UUID
    show_id: UUID
    booking_id: UUID
    seat: str | None = Field(description="the seat id; null for a general-admission place")
    section: str = Field(description="the section (for general admission: the place)")
    holder_name: str
    status: Literal["valid", "used", "void"] = Field(
        description="valid; used once admitted at the door; void once cancelled, refunded or "
        "transferred to someone else"
    )
    secret: str = Field(
        description="what the ticket's QR code holds: `TB1.<kid>.<payload>.<signature>`, "
        "Ed25519-signed (ticket, show, place); checkable offline with the public keys"
    )


class BookingTickets(BaseModel):
    booking_id: UUID
    tickets: list[TicketPublic] = Field(description="seats first, then GA places")
    position: int = POSITION


def signer_of(request: Request) -> TicketSigner:
    signer: TicketSigner | None = request.app.state.container.ticket_signer
    if signer is None:
        raise ProblemError(503, "unavailable", "ticket signing is not configured")
    return signer


def signed(row: dict[str, Any], signer: TicketSigner) -> TicketPublic:
    place = row["seat"] if row["seat"] is not None else row["section"]
    return TicketPublic(
        ticket_id=row["ticket_id"],
        show_id=row["show_id"],
        booking_id=row["booking_id"],
        seat=row["seat"],
        section=row["section"],
        holder_name=row["holder_name"],
        status=row["status"],
        secret=signer.sign(row["ticket_id"], row["show_id"], place),
    )


@router.get("/bookings/{booking_id}/tickets", response_model=BookingTickets, responses=RESPONSES)
async def booking_tickets(
    booking_id: UUID, user: CurrentUser, read: ReadSideDep, request: Request, after: After = None
) -> BookingTickets:
    """The booking's tickets, one per seat and general-admission place, once it is confirmed
    (none before): `{ticket_id, show_id, booking_id, seat, section, holder_name, status,
    secret}`. For the booking's customer (the tickets they hold or gave away), the show's
    organiser and admins (every ticket of the booking, also those transferred to others).
    With `after` (a `position` of the command API) the answer includes that write."""
    signer = signer_of(request)
    position = await caught_up(read, [BOOKINGS, TICKETS, REPORTS], after)
    booking = await query(read.models.booking, booking_id)
    if booking is None:
        raise ProblemError(404, "not-found", "booking not found")
    sees_all = user.is_admin or (
        user.is_organizer and await _organises(read, user, booking["show_id"])
    )
    if not sees_all and booking["customer_id"] != user.account_id:
        raise ProblemError(
            403, "forbidden", "only the booking's customer, the show's organiser or an admin"
        )

    def load() -> list[TicketPublic]:
        with read.models.connection() as conn:
            rows = tickets_of_booking(conn, booking_id)
        if not sees_all:  # a ticket given to someone else is theirs to see
            rows = [r for r in rows if r["holder_id"] == user.account_id]
        return [signed(row, signer) for row in rows]

    return BookingTickets(booking_id=booking_id, tickets=await query(load), position=position)


async def _organises(read: ReadSideDep, user: Principal, show_id: UUID) -> bool:
    def load() -> UUID | None:
        with read.models.connection() as conn:
            show = report_show(conn, show_id)
        return None if show is None else show.organizer_id

    return await query(load) == user.account_id
