"""Errors raised by the aggregates when a command breaks a rule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID


class DomainError(Exception):
    """A command was refused by a business rule; nothing was changed."""


class InvalidShowError(DomainError):
    """A show's definition is inconsistent (unknown tier, empty section, ...)."""


class SaleNotOpenError(DomainError):
    def __init__(self, show_id: UUID, status: str) -> None:
        super().__init__(f"show {show_id} is not on sale (status: {status})")
        self.show_id = show_id
        self.status = status


class ShowStatusError(DomainError):
    """A show-level transition is not allowed from the show's current status."""


class ShowDeletedError(ShowStatusError):
    """The show was deleted: it takes no more commands (answered like a show never known)."""

    def __init__(self, show_id: UUID) -> None:
        super().__init__(f"show {show_id} was deleted")
        self.show_id = show_id


class ShowEverBookedError(DomainError):
    """A show that ever had a booking cannot be deleted (its bookings and money stay
    accountable); cancel it instead."""

    def __init__(self, show_id: UUID) -> None:
        super().__init__(f"show {show_id} has had bookings: cancel it instead of deleting it")
        self.show_id = show_id


class UnknownSeatsError(DomainError):
    def __init__(self, seats: Sequence[str]) -> None:
        super().__init__(f"unknown seats: {', '.join(seats)}")
        self.seats = list(seats)


class UnknownSectionError(DomainError):
    def __init__(self, section: str) -> None:
        super().__init__(f"unknown section: {section}")
        self.section = section


class SeatsUnavailableError(DomainError):
    """Some requested seats are already held or sold by another booking."""

    def __init__(self, seats: Sequence[str]) -> None:
        super().__init__(f"seats no longer available: {', '.join(seats)}")
        self.seats = list(seats)


class SeatsTakenError(SeatsUnavailableError):
    """Seats held or sold by a booking cannot be blocked (they are its customer's)."""

    def __init__(self, held: Sequence[str], sold: Sequence[str]) -> None:
        named = [f"{s} (held)" for s in held] + [f"{s} (sold)" for s in sold]
        super().__init__([*held, *sold])
        self.args = (f"held or sold seats cannot be blocked: {', '.join(named)}",)
        self.held = list(held)
        self.sold = list(sold)


class NotGeneralAdmissionError(DomainError):
    """Only a general-admission section has a capacity to change (a seated one has seats)."""

    def __init__(self, section: str) -> None:
        super().__init__(
            f"section {section} is seated: only a general-admission section has a "
            "capacity to change (block or unblock its seats instead)"
        )
        self.section = section


class CapacityBelowTakenError(DomainError):
    """A GA section's capacity cannot go below the tickets already held or sold in it."""

    def __init__(self, section: str, capacity: int, held: int, sold: int) -> None:
        super().__init__(
            f"section {section} has {held + sold} tickets taken ({held} held, {sold} sold): "
            f"its capacity cannot go below {held + sold}, {capacity} asked"
        )
        self.section = section
        self.capacity = capacity
        self.held = held
        self.sold = sold
        self.taken = held + sold


class CapacityExceededError(DomainError):
    """A general-admission section or a best-available request cannot be satisfied."""

    def __init__(self, section: str | None, requested: int, available: int) -> None:
        where = f"section {section}" if section else "this show"
        super().__init__(f"{where} has {available} tickets left, {requested} requested")
        self.section = section
        self.requested = requested
        self.available = available


class TicketLimitError(DomainError):
    def __init__(self, requested: int, limit: int) -> None:
        super().__init__(f"a booking holds 1 to {limit} tickets, {requested} requested")
        self.requested = requested
        self.limit = limit


class CustomerTicketLimitError(DomainError):
    """The customer's held and bought tickets for this show would exceed its cap per customer
    (fair share: one buyer cannot hold a whole show). Distinct from TicketLimitError, which is
    the size of one booking."""

    def __init__(self, limit: int, already: int, requested: int) -> None:
        remaining = max(0, limit - already)
        super().__init__(
            f"at most {limit} tickets per customer for this show: you hold or bought {already}, "
            f"{requested} more requested, {remaining} left"
        )
        self.limit = limit
        self.already = already
        self.requested = requested
        self.remaining = remaining


class LapsedHoldLimitError(DomainError):
    """The customer let too many holds on this show lapse lately: no new hold for a while."""

    def __init__(self, lapses: int, window: timedelta, retry_after: timedelta) -> None:
        minutes = window.total_seconds() / 60
        wait = max(1, math.ceil(retry_after.total_seconds()))
        super().__init__(
            f"{lapses} of your holds on this show lapsed within {minutes:g} minutes: "
            f"you may hold seats again in {wait} s"
        )
        self.lapses = lapses
        self.retry_after_seconds = wait


class HoldNotFoundError(DomainError):
    """The booking holds nothing in this inventory (released, expired or never held)."""

    def __init__(self, booking_id: UUID) -> None:
        super().__init__(f"booking {booking_id} holds no seats")
        self.booking_id = booking_id


class IllegalTransitionError(DomainError):
    def __init__(self, booking_id: UUID, status: str, action: str) -> None:
        super().__init__(f"booking {booking_id} is {status}: cannot {action}")
        self.booking_id = booking_id
        self.status = status
        self.action = action


class OwnAccountError(DomainError):
    """An admin may not demote or deactivate their own account: the system keeps an admin
    (another admin may do it)."""

    def __init__(self, account_id: UUID, action: str) -> None:
        super().__init__(f"an admin cannot {action}; ask another admin")
        self.account_id = account_id
        self.action = action


class UnknownTicketError(DomainError):
    """The show's door list has no such ticket (never issued for this show)."""

    def __init__(self, ticket_id: UUID) -> None:
        super().__init__(f"ticket {ticket_id} is not a ticket of this show")
        self.ticket_id = ticket_id


class TicketNotValidError(DomainError):
    """The ticket is used or void (cancelled, refunded, transferred away): it cannot change
    hands."""

    def __init__(self, ticket_id: UUID, status: str) -> None:
        super().__init__(f"ticket {ticket_id} is {status}")
        self.ticket_id = ticket_id
        self.status = status


class TicketTransferLimitError(DomainError):
    """The ticket changed hands as often as a ticket may."""

    def __init__(self, ticket_id: UUID, limit: int) -> None:
        super().__init__(f"ticket {ticket_id} was transferred {limit} times: no more transfers")
        self.ticket_id = ticket_id
        self.limit = limit


class NotTicketHolderError(DomainError):
    """Only a ticket's holder (or an admin) may give it away."""

    def __init__(self, ticket_id: UUID) -> None:
        super().__init__(f"only the holder of ticket {ticket_id} or an admin may transfer it")
        self.ticket_id = ticket_id


class TransferToSelfError(DomainError):
    """A ticket is given to someone else: its holder already holds it."""

    def __init__(self, ticket_id: UUID) -> None:
        super().__init__(f"ticket {ticket_id} is already held by that account")
        self.ticket_id = ticket_id


class TransfersForbiddenError(DomainError):
    """The show's organiser does not let its tickets change hands."""

    def __init__(self, show_id: UUID) -> None:
        super().__init__(f"the organiser of show {show_id} does not allow ticket transfers")
        self.show_id = show_id


class TransferSaleClosedError(DomainError):
    """Tickets change hands only while the show's sale is open."""

    def __init__(self, show_id: UUID, status: str) -> None:
        super().__init__(f"the sale of show {show_id} is closed ({status}): no more transfers")
        self.show_id = show_id
        self.status = status
