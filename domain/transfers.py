"""Transfers: who may give a ticket to whom, and when (the door list does the hand-over).

A ticket changes hands (`DoorList.transfer`: the old ticket is void at once, its successor is
the receiver's) when its holder, or an admin, gives it to another account, while the show's
sale is open, and only if the show's organiser allows transfers (`Show.transfers_allowed`).
The door list itself refuses a ticket that is not valid and a place that changed hands
`max_transfers` times.

The receiver is named by e-mail. Account ids derive from the e-mail (`account_id_for`), so a
ticket given to an address nobody registered yet is held by the account that address will
register as: it is theirs the moment they register, with no claim step that could be raced.
Until then the ticket names the address as its holder.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from domain.door import DoorTicket
from domain.errors import (
    NotTicketHolderError,
    TransferSaleClosedError,
    TransfersForbiddenError,
    TransferToSelfError,
)
from domain.show import ON_SALE, Show


def check_giver(ticket: DoorTicket, actor_id: UUID, actor_is_admin: bool) -> None:
    """Only the ticket's holder, or an admin, gives it away."""
    if not actor_is_admin and ticket.holder_id != actor_id:
        raise NotTicketHolderError(ticket.ticket_id)


def check_receiver(ticket: DoorTicket, receiver_id: UUID) -> None:
    """A ticket goes to an account other than its holder's."""
    if receiver_id == ticket.holder_id:
        raise TransferToSelfError(ticket.ticket_id)


def check_transfers_open(show: Show, now: datetime) -> None:
    """Tickets of the show may change hands now: the organiser allows it, and the sale is
    open (a sale closes at `sale_closes_at`, by default the show's start, even before the
    sale-window worker records it)."""
    if not show.transfers_allowed:
        raise TransfersForbiddenError(show.id)
    closes_at = show.starts_at if show.sale_closes_at is None else show.sale_closes_at
    if show.status != ON_SALE:
        raise TransferSaleClosedError(show.id, str(show.status))
    if now >= closes_at or now >= show.starts_at:
        raise TransferSaleClosedError(show.id, "closed at " + closes_at.isoformat())
