"""The e-mail a ticket's receiver gets (`ticket.transferred`), composed for the notifier
(process_managers/notifier.py sends it, at most once per event like every other e-mail).

It carries no secret: the new ticket's QR code is shown to its holder once signed in
(`GET /me/tickets`), so an e-mail read by someone else, or sent to a mistyped address, gives
nobody a way in. An invited receiver (no account with the address yet) is told to register
with that address: the ticket is theirs from then on.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from commands.venue_time import local_time_of
from process_managers.integration_events import IntegrationEvent

TICKET_TRANSFERRED = "ticket.transferred"
TRANSFER_TYPES = frozenset({TICKET_TRANSFERRED})
SUBJECT = "A ticket for {title} was given to you"


def compose_transfer(event: IntegrationEvent, sender: str) -> EmailMessage | None:
    """The receiver's e-mail, or None when the event names no address."""
    payload = event.payload
    holder = payload.get("holder") or {}
    recipient = str(holder.get("email") or "")
    if event.type != TICKET_TRANSFERRED or not recipient:
        return None
    show = payload.get("show") or {}
    title = str(show.get("title") or "a show")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = SUBJECT.format(title=title)
    message["Message-ID"] = f"<{event.event_id}@ticketblitz>"
    message["X-TicketBlitz-Event-Id"] = str(event.event_id)
    message["X-TicketBlitz-Event-Type"] = event.type
    message["X-TicketBlitz-Ticket-Id"] = str(payload.get("ticket_id") or "")
    message.set_content(_body(payload, holder, show, title, recipient))
    return message


def _body(
    payload: dict[str, Any],
    holder: dict[str, Any],
    show: dict[str, Any],
    title: str,
    recipient: str,
) -> str:
    registered = bool(holder.get("registered"))
    name = str(holder.get("name") or "") if registered else ""
    giver = str((payload.get("previous_holder") or {}).get("name") or "Someone")
    seat = payload.get("seat")
    place = f"seat {seat}" if seat else f"general admission ({payload.get('section')})"
    starts = local_time_of(show.get("starts_at"), show.get("time_zone"))
    where = f" at {show['venue']}" if show.get("venue") else ""
    when = f" on {starts}" if show.get("starts_at") else ""
    lines = [
        f"Hello {name or 'there'},",
        "",
        f"{giver} gave you a ticket for {title}{where}{when}:",
        f"  {place} (ticket {payload.get('ticket_id')})",
        "",
    ]
    if registered:
        lines.append(
            "It is in your tickets now, with its QR code: sign in to TicketBlitz and open "
            "your tickets (GET /api/v1/me/tickets)."
        )
    else:
        lines += [
            f"To use it, register at TicketBlitz with this e-mail address ({recipient}).",
            "The ticket is yours from then on, with its QR code, in your tickets "
            "(GET /api/v1/me/tickets).",
        ]
    lines += [
        "The ticket it replaces is void: only yours admits at the door.",
        "",
        "TicketBlitz",
        "",
    ]
    return "\n".join(lines)
