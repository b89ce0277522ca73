"""The tickets a booking-confirmed e-mail carries: the PDF (one page per ticket, with its QR
code) and the calendar invite (.ics), attached by the notifier (process_managers/notifier.py).

The tickets are derived from the `booking.confirmed` integration event itself, exactly as the
show's writer issues them in the same transaction as the confirmation (domain/door.py
`DoorList.issue`: one per seat in the booking's order, then one per general-admission place,
section by section; ids `ticket_id_for(booking, index)`; the customer as holder), and their
secrets are signed on the spot (Ed25519 signatures are deterministic). So the attachments of
one event are the same bytes however often, and whenever, the e-mail is built: nothing is read
that could have changed or not be there yet (a read model behind the log, a ticket
transferred since), which keeps the notifier's at-most-once e-mail what it was. A ticket given
away before the e-mail went out is void at the door; `GET /bookings/{id}/tickets.pdf` always
has the current ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol
from uuid import UUID

from domain.door import section_of
from domain.ids import ticket_id_for
from infra.ticket_documents import (
    ShowInfo,
    TicketInfo,
    calendar_invite,
    place_text,
    tickets_pdf,
)
from process_managers.integration_events import IntegrationEvent

log = logging.getLogger(__name__)

CONFIRMED = "booking.confirmed"
SIGNATURE = "\nTicketBlitz\n"
PAID_LINE = "Amount paid: "  # process_managers/notifier.py's confirmation


class Signer(Protocol):
    """Signs a ticket's secret (infra/ticket_signing.py TicketSigner)."""

    def sign(self, ticket_id: UUID, show_id: UUID, place: str) -> str: ...


def issued_places(seats: Sequence[str], general: Mapping[str, int]) -> list[tuple[str | None, str]]:
    """(seat or None, section) of each ticket a booking is issued, in issue order (as
    `DoorList.issue`: the seats, then each general-admission section's places)."""
    places: list[tuple[str | None, str]] = [(seat, section_of(seat)) for seat in seats]
    for section, count in general.items():
        places.extend((None, section) for _ in range(int(count)))
    return places


def show_info(show_id: UUID, show: Mapping[str, Any]) -> ShowInfo | None:
    """The show as a booking event's payload carries it (None if it carries none)."""
    try:
        starts_at = datetime.fromisoformat(str(show["starts_at"]))
    except (KeyError, ValueError):
        return None
    return ShowInfo(
        show_id=show_id,
        title=str(show.get("title") or "your show"),
        venue=str(show.get("venue") or ""),
        starts_at=starts_at,
        time_zone=str(show.get("time_zone") or "UTC"),
    )


def confirmed_tickets(event: IntegrationEvent, signer: Signer) -> list[TicketInfo]:
    """The tickets issued with the booking `event` confirms, signed."""
    assert event.booking_id is not None
    payload = event.payload
    holder = str((payload.get("customer") or {}).get("name") or "")
    places = issued_places(payload.get("seats") or [], payload.get("general") or {})
    tickets = []
    for index, (seat, section) in enumerate(places):
        ticket_id = ticket_id_for(event.booking_id, index)
        secret = signer.sign(ticket_id, event.show_id, seat if seat is not None else section)
        tickets.append(TicketInfo(ticket_id, event.booking_id, seat, section, holder, secret))
    return tickets


class TicketAttachments:
    """Attaches the tickets (PDF) and the calendar invite (.ics) to a booking-confirmed
    e-mail; the notifier calls it with each e-mail it composed."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def __call__(self, event: IntegrationEvent, message: EmailMessage) -> None:
        if event.type != CONFIRMED or event.booking_id is None:
            return
        show = show_info(event.show_id, event.payload.get("show") or {})
        if show is None:
            return
        try:
            tickets = confirmed_tickets(event, self._signer)
            if not tickets:
                return
            paid = (int(event.payload.get("paid_cents", 0)), str(event.payload.get("currency", "")))
            pdf = tickets_pdf(show, tickets, created_at=event.occurred_at, paid=paid)
            places = [place_text(t.seat, t.section) for t in tickets]
            invite = calendar_invite(show, event.booking_id, places, created_at=event.occurred_at)
        except Exception:  # a bug or a signing key gone: the confirmation still goes out
            log.exception("tickets for booking %s could not be attached", event.booking_id)
            return
        _add_note(message, event.booking_id)
        message.add_attachment(
            pdf, maintype="application", subtype="pdf", filename=f"tickets-{event.booking_id}.pdf"
        )
        message.add_attachment(
            invite,
            maintype="text",
            subtype="calendar",
            filename=f"{_file_name(show.title)}.ics",
            params={"method": "PUBLISH"},
        )


def _add_note(message: EmailMessage, booking_id: UUID) -> None:
    """Say in the text where the tickets are: after the amount paid (before any suggestions),
    else before the signature."""
    text = message.get_content()
    note = (
        "\nYour tickets are attached (PDF, one page and QR code per ticket; each admits once),"
        "\nwith a calendar invite. You can also download them again:"
        f"\nGET /api/v1/bookings/{booking_id}/tickets.pdf\n"
    )
    lines = text.split("\n")
    paid = next((i for i, line in enumerate(lines) if line.startswith(PAID_LINE)), None)
    if paid is not None:
        text = "\n".join([*lines[: paid + 1], note.rstrip("\n"), *lines[paid + 1 :]])
    else:
        head, sep, tail = text.rpartition(SIGNATURE)
        text = head + note + sep + tail if sep else text + note
    message.set_content(text)


def _file_name(title: str) -> str:
    """A file name from a title: letters, digits and dashes (safe in any mail client)."""
    kept = "".join(c if c.isascii() and c.isalnum() else "-" for c in title)
    name = "-".join(part for part in kept.split("-") if part)[:60]
    return name or "show"
