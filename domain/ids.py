"""Deterministic aggregate ids, so that looking up or creating twice cannot duplicate."""

from __future__ import annotations

from uuid import UUID, uuid5

TICKETBLITZ_NAMESPACE = UUID("6f1c1b8e-3d5a-4c1e-9a57-1f0b8a2d4c11")


def account_id_for(email: str) -> UUID:
    """One account per e-mail address: registering twice collides on the same stream."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"account:{email.strip().lower()}")


def inventory_id_for(show_id: UUID) -> UUID:
    return uuid5(TICKETBLITZ_NAMESPACE, f"inventory:{show_id}")


def booking_id_for_request(customer_id: UUID, idempotency_key: str) -> UUID:
    """A retried request with the same key targets the same booking stream."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"booking:{customer_id}:{idempotency_key}")


def door_list_id_for(show_id: UUID) -> UUID:
    """The show's door list (its tickets): one per show."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"door-list:{show_id}")


def ticket_id_for(booking_id: UUID, index: int) -> UUID:
    """The booking's `index`-th ticket (0-based, seats first, then GA places): issuing again
    names the same tickets."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"ticket:{booking_id}:{index}")


def transferred_ticket_id_for(ticket_id: UUID) -> UUID:
    """The ticket that replaces `ticket_id` when it changes hands (a ticket is transferred at
    most once: it is void afterwards, and its successor has its own id)."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"ticket-transfer:{ticket_id}")


def waiting_list_id_for(show_id: UUID) -> UUID:
    """The show's waiting list: one per show."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"waiting-list:{show_id}")


def presale_codes_id_for(show_id: UUID) -> UUID:
    """The show's presale codes (their definitions; their uses are counted by its inventory)."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"presale-codes:{show_id}")
