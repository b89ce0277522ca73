"""Tickets follow their booking: issued with its confirmation, voided with its cancellation,
always in the same batch (one transaction) of the show's writer as the booking's own change.

A booking has tickets only once confirmed, so only a confirmed booking's undoing touches the
show's door list: the batches of unpaid holds, expiries and declines never load it.
"""

from __future__ import annotations

from uuid import UUID

from commands.show_writer import ShowBatch
from domain.booking import Booking


def issue_tickets(batch: ShowBatch, booking: Booking) -> list[UUID]:
    """One ticket per seat and GA place of the (just confirmed) booking, to its customer;
    answers the ids issued (none when issued before)."""
    return batch.door_list().issue(
        booking.id,
        booking.customer_id,
        batch.holder_name(booking.customer_id),
        booking.seats,
        booking.general,
    )


def void_tickets(batch: ShowBatch, booking_id: UUID, reason: str) -> list[UUID]:
    """Void the booking's tickets (it was cancelled or refunded); answers those voided."""
    return batch.door_list().void_booking(booking_id, reason)
