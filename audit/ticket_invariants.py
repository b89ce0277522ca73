"""The rules of tickets (domain/door.py), checked before each door-list event is applied, like
those of audit/invariants.py (which gathers these into its CHECKS):

- a ticket is issued only for a confirmed booking, one per seat and GA place it bought;
- a ticket is admitted at most once;
- a void ticket (cancelled, refunded, transferred away) is never admitted, nor a ticket whose
  booking is no longer confirmed; only a valid ticket changes hands.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.booking import CONFIRMED, Booking
from domain.door import USED, VALID, VOID, DoorList, Ticket

TICKET_UNCONFIRMED = "ticket-for-unconfirmed-booking"
TICKETS_DIFFER = "tickets-differ-from-booking"
ADMITTED_TWICE = "ticket-admitted-twice"
VOID_ADMITTED = "void-ticket-admitted"
INVALID_TRANSFERRED = "invalid-ticket-transferred"

TICKET_RULES = (
    TICKET_UNCONFIRMED,
    TICKETS_DIFFER,
    ADMITTED_TWICE,
    VOID_ADMITTED,
    INVALID_TRANSFERRED,
)


class Findings(Protocol):
    """What these checks use of audit.invariants.Invariants."""

    aggregates: dict[UUID, Aggregate]

    def report(self, position: int, stream_id: UUID | None, rule: str, message: str) -> None: ...


def _issued(audit: Findings, position: int, e: Any, door: DoorList) -> None:
    booking = audit.aggregates.get(e.booking_id)
    if not isinstance(booking, Booking) or booking.status != CONFIRMED:
        status = "unknown" if not isinstance(booking, Booking) else booking.status
        audit.report(
            position,
            e.originator_id,
            TICKET_UNCONFIRMED,
            f"{len(e.tickets)} tickets issued for booking {e.booking_id}, which is {status}",
        )
        return
    seats = [t["seat"] for t in e.tickets if t["seat"] is not None]
    general = Counter(t["section"] for t in e.tickets if t["seat"] is None)
    if seats != list(booking.seats) or general != Counter(booking.general):
        audit.report(
            position,
            e.originator_id,
            TICKETS_DIFFER,
            f"tickets for seats {seats} and GA {dict(general)} issued for booking "
            f"{e.booking_id} of seats {booking.seats} and GA {booking.general}",
        )


def _admitted(audit: Findings, position: int, e: Any, door: DoorList) -> None:
    ticket = door.tickets.get(e.ticket_id.hex)
    if ticket is None:
        return  # the event does not apply: reported as such when it is applied
    if ticket.status == USED:
        audit.report(
            position,
            e.originator_id,
            ADMITTED_TWICE,
            f"ticket {e.ticket_id} admitted at gate {e.gate} at {e.at.isoformat()}, already "
            f"admitted at gate {ticket.gate} at {_when(ticket)}",
        )
    elif ticket.status == VOID:
        audit.report(
            position, e.originator_id, VOID_ADMITTED, f"void ticket {e.ticket_id} admitted"
        )
    else:
        booking = audit.aggregates.get(UUID(ticket.booking))
        if isinstance(booking, Booking) and booking.status != CONFIRMED:
            audit.report(
                position,
                e.originator_id,
                VOID_ADMITTED,
                f"ticket {e.ticket_id} admitted while its booking {booking.id} is {booking.status}",
            )


def _transferred(audit: Findings, position: int, e: Any, door: DoorList) -> None:
    ticket = door.tickets.get(e.ticket_id.hex)
    if ticket is not None and ticket.status != VALID:
        audit.report(
            position,
            e.originator_id,
            INVALID_TRANSFERRED,
            f"ticket {e.ticket_id} transferred while {ticket.status}",
        )


def _when(ticket: Ticket) -> str:
    return "?" if ticket.admitted_at is None else ticket.admitted_at.isoformat()


TicketCheck = Callable[[Any, int, Any, Any], None]

TICKET_CHECKS: dict[type, TicketCheck] = {
    DoorList.TicketsIssued: _issued,  # type: ignore[attr-defined]
    DoorList.TicketAdmitted: _admitted,  # type: ignore[attr-defined]
    DoorList.TicketTransferred: _transferred,  # type: ignore[attr-defined]
}
