"""The e-mail a fan gets when the waiting list offers them seats (`waitlist.offered`), composed
for the notifier (process_managers/notifier.py sends it, at most once per event like every
other e-mail: the offer's event id is its key).

It says what is held, what it costs, until when (on the venue's clock, as every time people
read), and where to pay: the offer is a booking held for the fan (`offer: true`), paid like
any hold. Unpaid by then, the seats go to the next entry and this entry ends.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from commands.venue_time import local_time_of
from domain.money import money
from process_managers.integration_events import IntegrationEvent

WAITLIST_OFFERED = "waitlist.offered"
WAITLIST_MAIL_TYPES = frozenset({WAITLIST_OFFERED})
SUBJECT = "Seats for {title} are yours until {until}"
DEFAULT_PUBLIC_URL = "http://localhost:8080"


def offer_subject(title: str, expires_at: str | None, zone: str | None) -> str:
    return SUBJECT.format(title=title, until=local_time_of(expires_at, zone))


def compose_offer(
    event: IntegrationEvent, sender: str, public_url: str = DEFAULT_PUBLIC_URL
) -> EmailMessage | None:
    """The offer's e-mail to the entry's customer, or None (another event, or no address)."""
    payload = event.payload
    customer = payload.get("customer") or {}
    recipient = str(customer.get("email") or "")
    if event.type != WAITLIST_OFFERED or not recipient or event.booking_id is None:
        return None
    show = payload.get("show") or {}
    title = str(show.get("title") or "your show")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = offer_subject(title, payload.get("expires_at"), show.get("time_zone"))
    message["Message-ID"] = f"<{event.event_id}@ticketblitz>"
    message["X-TicketBlitz-Event-Id"] = str(event.event_id)
    message["X-TicketBlitz-Event-Type"] = event.type
    message["X-TicketBlitz-Booking-Id"] = str(event.booking_id)
    message["X-TicketBlitz-Entry-Id"] = str(payload.get("entry_id") or "")
    message.set_content(_body(event, payload, customer, show, title, public_url))
    return message


def pay_link(public_url: str, booking_id: object) -> str:
    return f"{public_url.rstrip('/')}/api/v1/bookings/{booking_id}/pay"


def _body(
    event: IntegrationEvent,
    payload: dict[str, Any],
    customer: dict[str, Any],
    show: dict[str, Any],
    title: str,
    public_url: str,
) -> str:
    zone = show.get("time_zone")
    until = local_time_of(payload.get("expires_at"), zone)
    where = f" at {show['venue']}" if show.get("venue") else ""
    when = f" on {local_time_of(show.get('starts_at'), zone)}" if show.get("starts_at") else ""
    held = [f"  seat {s}" for s in payload.get("seats") or []] + [
        f"  {n} x general admission ({section})"
        for section, n in (payload.get("general") or {}).items()
    ]
    lines = [
        f"Hello {customer.get('name') or 'there'},",
        "",
        f"Seats for {title}{where}{when} came back, and you are next on the waiting list.",
        "We are holding them for you:",
        *held,
    ]
    if payload.get("amount_cents") is not None:
        amount = money(int(payload["amount_cents"]), str(payload.get("currency") or ""))
        lines.append(f"Amount: {amount}")
    lines += [
        "",
        f"They are yours until {until}. Pay for booking {event.booking_id} before then:",
        f"  {pay_link(public_url, event.booking_id)}",
        '  (POST, with your payment method, e.g. {"payment_method": "pm_..."})',
        "",
        "If it is not paid by then, the seats go to the next fan on the waiting list and your "
        "entry ends. Not going after all? Cancel the booking "
        f"(POST /api/v1/bookings/{event.booking_id}/cancel) and they move on at once.",
        "",
        "TicketBlitz",
        "",
    ]
    return "\n".join(lines)
