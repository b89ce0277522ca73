"""DoorList: one per show; the show's tickets and who came in with them.

A confirmed booking gets one ticket per seat and per general-admission place (`issue`); a
cancellation or refund voids them (`void_booking`); a transfer voids the ticket and issues its
successor to the new holder (`transfer`, at most `max_transfers` hand-overs per place). At the
door a ticket is admitted once (`admit`): a second scan answers when and where it was admitted,
a void ticket is refused; those are answers, not errors. The scan id of every admission is
remembered, so a scanner retrying a scan hears its first answer again.

It lives in the show's writer beside the SeatInventory, so issuing, voiding, admitting and
transferring are decided in the same serialized batches as holds (two gates scanning one ticket
at the same instant: one admission). A big show has tens of thousands of tickets: the state is
dicts of small records (Ticket), snapshotted as JSON arrays (infra/event_store.py).

Invariants: a ticket is valid iff issued, not voided and not transferred away; it is admitted at
most once, and never while void; a booking's tickets are issued once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import TicketNotValidError, TicketTransferLimitError, UnknownTicketError
from domain.ids import door_list_id_for, ticket_id_for, transferred_ticket_id_for

# A ticket's status.
VALID = "valid"
USED = "used"
VOID = "void"

# What the door answers a scan (Admission.result).
ADMITTED = "admitted"
ALREADY_ADMITTED = "already-admitted"
REFUSED_VOID = "void"

DEFAULT_MAX_TRANSFERS = 3


@dataclass(slots=True)
class Ticket:
    """One ticket in the door list's state (kept small: a snapshot holds every ticket)."""

    booking: str  # the booking's id (hex)
    seat: str | None  # None: a general-admission place
    section: str
    holder: str  # the holder's account id (hex)
    holder_name: str
    status: str = VALID
    admitted_at: datetime | None = None
    gate: str | None = None
    transfers: int = 0  # how often this place changed hands before this ticket


_ticket_fields = attrgetter(*(f.name for f in fields(Ticket)))


@dataclass(frozen=True)
class DoorTicket:
    """A ticket as the door list's queries answer it."""

    ticket_id: UUID
    booking_id: UUID
    seat: str | None
    section: str
    holder_id: UUID
    holder_name: str
    status: str
    admitted_at: datetime | None
    gate: str | None
    transfers: int

    @property
    def place(self) -> str:
        """The seat, or the GA section: what the ticket admits to."""
        return self.seat if self.seat is not None else self.section


@dataclass(frozen=True)
class Admission:
    """The door's answer to a scan. `at` and `gate` are those of the ticket's admission (for
    ALREADY_ADMITTED: the first one); `replayed`: the same scan id was answered before."""

    result: str  # ADMITTED, ALREADY_ADMITTED or REFUSED_VOID
    ticket: DoorTicket
    at: datetime | None
    gate: str | None
    replayed: bool = False

    @property
    def admitted(self) -> bool:
        return self.result == ADMITTED


def section_of(seat: str) -> str:
    """The section of a seat id SECTION-ROW-NUMBER (section codes have no '-')."""
    return seat.split("-", 1)[0]


class DoorList(Aggregate):
    # Snapshots of a later class version need an upcast_v1_v2 here (see SeatInventory).
    class_version = 1

    @event("Created")
    def __init__(self, show_id: UUID) -> None:
        self.show_id = show_id
        self.tickets: dict[str, Ticket] = {}  # ticket id (hex) -> ticket
        self.by_booking: dict[str, list[str]] = {}  # booking id (hex) -> its ticket ids (hex)
        self.scans: dict[str, str] = {}  # scan id -> the ticket (hex) it admitted

    @staticmethod
    def create_id(show_id: UUID, **_: Any) -> UUID:
        return door_list_id_for(show_id)

    # --- queries (pure) ---

    def ticket(self, ticket_id: UUID) -> DoorTicket | None:
        found = self.tickets.get(ticket_id.hex)
        return None if found is None else _view(ticket_id.hex, found)

    def tickets_of(self, booking_id: UUID) -> list[DoorTicket]:
        """The booking's tickets in issue order, transferred ones (and their successors)
        included."""
        return [_view(t, self.tickets[t]) for t in self.by_booking.get(booking_id.hex, [])]

    def void_ticket_ids(self) -> list[UUID]:
        return [UUID(t) for t, ticket in self.tickets.items() if ticket.status == VOID]

    def has_tickets(self, booking_id: UUID) -> bool:
        return booking_id.hex in self.by_booking

    def copy(self) -> DoorList:
        """The same door list with records of its own: a snapshot of the copy can be encoded
        and written while this one goes on admitting (a copy of 20,000 tickets takes
        milliseconds, their snapshot a few hundred)."""
        twin = copy.copy(self)
        twin.tickets = {key: Ticket(*_ticket_fields(t)) for key, t in self.tickets.items()}
        twin.by_booking = {key: list(ids) for key, ids in self.by_booking.items()}
        twin.scans = dict(self.scans)
        vars(twin)["_pending_events"] = []  # the library's list: a shallow copy would share it
        return twin

    # --- commands ---

    def issue(
        self,
        booking_id: UUID,
        holder_id: UUID,
        holder_name: str,
        seats: Sequence[str],
        general: Mapping[str, int],
    ) -> list[UUID]:
        """One ticket per seat, then per GA place (ids `ticket_id_for(booking, i)`); answers the
        ids issued. A booking's tickets are issued once: again, nothing is issued ([])."""
        if booking_id.hex in self.by_booking:
            return []
        places: list[tuple[str | None, str]] = [(seat, section_of(seat)) for seat in seats]
        for section, count in general.items():
            places.extend((None, section) for _ in range(count))
        if not places:
            return []
        tickets: list[dict[str, Any]] = [
            {
                "ticket_id": ticket_id_for(booking_id, index),
                "seat": seat,
                "section": section,
                "holder_name": holder_name,
            }
            for index, (seat, section) in enumerate(places)
        ]
        self._tickets_issued(booking_id=booking_id, holder_id=holder_id, tickets=tickets)
        return [ticket_id_for(booking_id, index) for index in range(len(tickets))]

    @event("TicketsIssued")
    def _tickets_issued(
        self, booking_id: UUID, holder_id: UUID, tickets: list[dict[str, Any]]
    ) -> None:
        ids = self.by_booking.setdefault(booking_id.hex, [])
        for issued in tickets:
            key = issued["ticket_id"].hex
            self.tickets[key] = Ticket(
                booking_id.hex,
                issued["seat"],
                issued["section"],
                holder_id.hex,
                issued["holder_name"],
            )
            ids.append(key)

    def void_booking(self, booking_id: UUID, reason: str) -> list[UUID]:
        """Void the booking's tickets that are not void yet (its cancellation or refund);
        answers those voided (none: nothing recorded)."""
        keys = [t for t in self.by_booking.get(booking_id.hex, []) if self._voidable(t)]
        if not keys:
            return []
        voided = [UUID(k) for k in keys]
        self._tickets_voided(ticket_ids=voided, reason=reason)
        return voided

    def _voidable(self, key: str) -> bool:
        return self.tickets[key].status != VOID

    @event("TicketsVoided")
    def _tickets_voided(self, ticket_ids: list[UUID], reason: str) -> None:
        for ticket_id in ticket_ids:
            self.tickets[ticket_id.hex].status = VOID

    def admit(self, ticket_id: UUID, gate: str, scan_id: str, at: datetime) -> Admission:
        """Let the ticket's holder in at `gate`: ADMITTED once, then ALREADY_ADMITTED (with the
        first admission's time and gate), REFUSED_VOID for a void ticket. The same `scan_id`
        for the same ticket replays its first answer (a scanner's retry)."""
        key = ticket_id.hex
        ticket = self.tickets.get(key)
        if ticket is None:
            raise UnknownTicketError(ticket_id)
        if self.scans.get(scan_id) == key:
            view = _view(key, ticket, ticket_id)
            return Admission(ADMITTED, view, ticket.admitted_at, ticket.gate, True)
        if ticket.status == VOID:
            return Admission(
                REFUSED_VOID, _view(key, ticket, ticket_id), ticket.admitted_at, ticket.gate
            )
        if ticket.status == USED:
            view = _view(key, ticket, ticket_id)
            return Admission(ALREADY_ADMITTED, view, ticket.admitted_at, ticket.gate)
        # The event class directly, not through `_ticket_admitted(...)`: the decorator's
        # argument plumbing costs about 10 us of each scan. Same event, same state change.
        self.trigger_event(
            cast(Any, DoorList).TicketAdmitted,
            ticket_id=ticket_id,
            gate=gate,
            scan_id=scan_id,
            at=at,
        )
        return Admission(ADMITTED, _view(key, ticket, ticket_id), at, gate)

    @event("TicketAdmitted")
    def _ticket_admitted(self, ticket_id: UUID, gate: str, scan_id: str, at: datetime) -> None:
        ticket = self.tickets[ticket_id.hex]
        ticket.status = USED
        ticket.admitted_at = at
        ticket.gate = gate
        self.scans.setdefault(scan_id, ticket_id.hex)  # the first answer to a scan id stays

    def transfer(
        self,
        ticket_id: UUID,
        to_holder_id: UUID,
        to_holder_name: str,
        max_transfers: int = DEFAULT_MAX_TRANSFERS,
    ) -> DoorTicket:
        """Give a valid ticket to another holder: it becomes void, and its successor (id
        `transferred_ticket_id_for(ticket_id)`, same booking and place) is the new holder's.
        A place changes hands at most `max_transfers` times. Answers the new ticket."""
        key = ticket_id.hex
        ticket = self.tickets.get(key)
        if ticket is None:
            raise UnknownTicketError(ticket_id)
        if ticket.status != VALID:
            raise TicketNotValidError(ticket_id, ticket.status)
        if ticket.transfers >= max_transfers:
            raise TicketTransferLimitError(ticket_id, max_transfers)
        new_ticket_id = transferred_ticket_id_for(ticket_id)
        self._ticket_transferred(
            ticket_id=ticket_id,
            new_ticket_id=new_ticket_id,
            to_holder_id=to_holder_id,
            to_holder_name=to_holder_name,
        )
        return _view(new_ticket_id.hex, self.tickets[new_ticket_id.hex])

    @event("TicketTransferred")
    def _ticket_transferred(
        self, ticket_id: UUID, new_ticket_id: UUID, to_holder_id: UUID, to_holder_name: str
    ) -> None:
        old = self.tickets[ticket_id.hex]
        old.status = VOID
        new_key = new_ticket_id.hex
        self.tickets[new_key] = Ticket(
            old.booking,
            old.seat,
            old.section,
            to_holder_id.hex,
            to_holder_name,
            transfers=old.transfers + 1,
        )
        self.by_booking[old.booking].append(new_key)


def _view(key: str, ticket: Ticket, ticket_id: UUID | None = None) -> DoorTicket:
    return DoorTicket(
        ticket_id=UUID(key) if ticket_id is None else ticket_id,
        booking_id=UUID(ticket.booking),
        seat=ticket.seat,
        section=ticket.section,
        holder_id=UUID(ticket.holder),
        holder_name=ticket.holder_name,
        status=ticket.status,
        admitted_at=ticket.admitted_at,
        gate=ticket.gate,
        transfers=ticket.transfers,
    )
