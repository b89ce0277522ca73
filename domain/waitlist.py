"""WaitingList: one per show; fans waiting for tickets of a sold-out show (or section), served in
first-come order when seats come back.

An entry asks for 1 to 10 tickets, in one section or anywhere. Its status goes `waiting` ->
`offered` (the show's writer held seats for it: an offer, a booking with `offer: true`) ->
`fulfilled` (the offer was paid) or `lapsed` (the offer expired, was declined or cancelled, or
the customer could not take it); or `left` (the customer left, also while offered). An entry
gets at most one offer: a lapsed offer ends the entry and the seats move on to the next one.

Rules: one active entry (waiting or offered) per customer and show; entries are served in the
order they joined, and an entry the free seats cannot serve is passed over for a later one that
fits (`servable_entries`, which the caller holds seats for one by one, so no seat serves two).
While a waiting entry can be served by the free seats, those seats are owed to it (`owed`): the
public does not get them.

`WaitingListEntry` is a pointer from an entry id to its show and customer, so that
`DELETE /waitlist/{entry_id}` finds the show's writer without a read model.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.best_available import MAX_TICKETS_PER_BOOKING, check_quantity
from domain.errors import CapacityExceededError, DomainError, UnknownSectionError
from domain.ids import TICKETBLITZ_NAMESPACE, waiting_list_id_for
from domain.seat_state import SeatState

# An entry's status.
WAITING: Final = "waiting"
OFFERED: Final = "offered"
FULFILLED: Final = "fulfilled"
LAPSED: Final = "lapsed"
LEFT: Final = "left"
ACTIVE: Final = frozenset({WAITING, OFFERED})  # on the list: counted for a position

# Why an entry lapsed without an offer (OfferLapsed names the booking the offer would have had).
CANNOT_TAKE_LIMIT: Final = "not offered: the customer holds the most tickets allowed"
CANNOT_TAKE_INACTIVE: Final = "not offered: the customer's account is deactivated"


class AlreadyWaitingError(DomainError):
    """The customer has an entry on this show's waiting list already (waiting or offered)."""

    def __init__(self, entry_id: UUID) -> None:
        super().__init__(f"already on this show's waiting list (entry {entry_id})")
        self.entry_id = entry_id


class TicketsAvailableError(DomainError):
    """Tickets can still be held for the request: book them instead of waiting."""

    def __init__(self, quantity: int, section: str | None) -> None:
        where = "the show" if section is None else f"section {section}"
        super().__init__(f"{quantity} tickets of {where} can still be booked: book them instead")
        self.quantity = quantity
        self.section = section


class EntryClosedError(DomainError):
    """The entry is no longer on the list (fulfilled, lapsed, left), or its offer is paid."""

    def __init__(self, entry_id: UUID, status: str) -> None:
        super().__init__(f"waiting-list entry {entry_id} is {status}")
        self.entry_id = entry_id
        self.status = status


def offer_booking_id_for(entry_id: UUID) -> UUID:
    """The booking of an entry's offer (an entry has at most one): a replay or a second
    decision cannot make another, and the log tells an offer's hold from the public's."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"waitlist-offer:{entry_id}")


def section_of(seat: str) -> str:
    """The section of a seat id SECTION-ROW-NUMBER (section codes have no '-')."""
    return seat.split("-", 1)[0]


@dataclass(frozen=True)
class FreeCounts:
    """Free tickets per section of a show's inventory (seated: free seats; GA: places left).
    Best-available serves `quantity` in a scope iff these counts allow it (it falls back to
    scattered seats), so they decide servability without searching or changing anything."""

    seated: dict[str, int]
    general: dict[str, int]

    @classmethod
    def of(
        cls,
        inventory: SeatState,
        plus_seats: Collection[str] = (),
        plus_general: dict[str, int] | None = None,
    ) -> FreeCounts:
        """The inventory's free tickets, and `plus_*` counted as free too (the audit: the
        seats of an offer just held, as they were before)."""
        seated: dict[str, int] = {}
        free = inventory.row_free
        for row in inventory.rows:
            n = free.get(row.key, 0)
            if n:
                seated[row.section] = seated.get(row.section, 0) + n
        for seat in plus_seats:
            section = section_of(seat)
            seated[section] = seated.get(section, 0) + 1
        general = {code: ga.left for code, ga in inventory.general.items()}
        for code, n in (plus_general or {}).items():
            general[code] = general.get(code, 0) + n
        return cls(seated, general)

    def serves(self, quantity: int, section: str | None) -> bool:
        if section is None:
            return sum(self.seated.values()) >= quantity or any(
                left >= quantity for left in self.general.values()
            )
        if section in self.general:
            return self.general[section] >= quantity
        return self.seated.get(section, 0) >= quantity


@dataclass(slots=True)
class WaitingEntry:
    """One fan's place on the list."""

    customer: str  # the customer's id (hex)
    quantity: int
    section: str | None  # None: anywhere
    joined_at: datetime
    status: str = WAITING
    booking: str | None = None  # the offer's booking (hex), once offered
    reason: str | None = None  # why it lapsed or left
    expires_at: datetime | None = None  # the offer's


@dataclass(frozen=True)
class Servable:
    """A waiting entry best-available can serve now, and what it would get."""

    entry_id: UUID
    entry: WaitingEntry
    seats: list[str]
    general: dict[str, int] = field(default_factory=dict)


class WaitingList(Aggregate):
    class_version = 1

    @event("Created")
    def __init__(self, show_id: UUID) -> None:
        self.show_id = show_id
        self.entries: dict[str, WaitingEntry] = {}  # entry id (hex) -> entry, in joining order
        self.waiting: dict[str, None] = {}  # the waiting entries (hex), in joining order
        self.offered: dict[str, None] = {}  # the offered entries (hex)
        self.active: dict[str, str] = {}  # customer (hex) -> their waiting or offered entry

    @staticmethod
    def create_id(show_id: UUID, **_: Any) -> UUID:
        return waiting_list_id_for(show_id)

    # --- queries (pure) ---

    def entry(self, entry_id: UUID) -> WaitingEntry | None:
        return self.entries.get(entry_id.hex)

    def active_entry_of(self, customer_id: UUID) -> UUID | None:
        found = self.active.get(customer_id.hex)
        return None if found is None else UUID(found)

    def position_of(self, entry_id: UUID) -> int | None:
        """1 + the entries joined before it that are still waiting or offered (None: it is not
        on the list)."""
        key = entry_id.hex
        entry = self.entries.get(key)
        if entry is None or entry.status not in ACTIVE:
            return None
        ahead = 0
        for other_key, other in self.entries.items():  # in joining order
            if other_key == key:
                break
            ahead += other.status in ACTIVE
        return ahead + 1

    def offered_entries(self) -> list[tuple[UUID, WaitingEntry]]:
        return [(UUID(k), self.entries[k]) for k in self.offered]

    def waiting_entries(self) -> list[tuple[UUID, WaitingEntry]]:
        return [(UUID(k), self.entries[k]) for k in self.waiting]

    def servable_entries(self, inventory: Any) -> Iterator[Servable]:
        """The waiting entries that best-available can serve now, first come first served,
        passing over those it cannot. Lazy: the caller holds each one's seats before asking
        for the next, so that no seat serves two entries (`inventory` is a SeatInventory)."""
        failed: dict[str | None, int] = {}  # scope -> smallest quantity it could not serve
        for key in list(self.waiting):
            entry = self.entries[key]
            if entry.status != WAITING:
                continue  # the caller changed it meanwhile
            scope = entry.section
            if entry.quantity >= failed.get(scope, MAX_TICKETS_PER_BOOKING + 1):
                continue  # holds only take seats away: what failed before still fails
            try:
                seats, general = inventory.choose_best_available(entry.quantity, scope)
            except (CapacityExceededError, UnknownSectionError):
                failed[scope] = entry.quantity
                continue
            yield Servable(UUID(key), entry, seats, general)

    def owed(self, counts: FreeCounts, sections: Collection[str] | None) -> UUID | None:
        """The first waiting entry that the free tickets (`counts`) can serve and that could
        take a ticket in `sections` (None: in any section); None if there is none."""
        for key in self.waiting:
            entry = self.entries[key]
            scope = entry.section
            overlaps = scope is None or sections is None or scope in sections
            if overlaps and counts.serves(entry.quantity, scope):
                return UUID(key)
        return None

    # --- commands ---

    def join(
        self,
        entry_id: UUID,
        customer_id: UUID,
        quantity: int,
        section: str | None,
        joined_at: datetime,
        sections: dict[str, str],
    ) -> None:
        """Add an entry at the end. `sections`: the show's sections (code -> kind)."""
        check_quantity(quantity)
        if section is not None and section not in sections:
            raise UnknownSectionError(section)
        self.check_can_join(customer_id)
        if entry_id.hex in self.entries:
            raise AlreadyWaitingError(entry_id)
        self._entry_joined(
            entry_id=entry_id,
            customer_id=customer_id,
            quantity=quantity,
            section=section,
            joined_at=joined_at,
        )

    def check_can_join(self, customer_id: UUID) -> None:
        found = self.active_entry_of(customer_id)
        if found is not None:
            raise AlreadyWaitingError(found)

    @event("EntryJoined")
    def _entry_joined(
        self,
        entry_id: UUID,
        customer_id: UUID,
        quantity: int,
        section: str | None,
        joined_at: datetime,
    ) -> None:
        key = entry_id.hex
        self.entries[key] = WaitingEntry(customer_id.hex, quantity, section, joined_at)
        self.waiting[key] = None
        self.active[customer_id.hex] = key

    def leave(self, entry_id: UUID, reason: str) -> UUID | None:
        """The customer leaves; answers the offer's booking if it had one (the caller cancels
        it and frees its seats in the same decision)."""
        entry = self._entry(entry_id)
        if entry.status not in ACTIVE:
            raise EntryClosedError(entry_id, entry.status)
        booking = entry.booking if entry.status == OFFERED else None
        self._entry_left(entry_id=entry_id, reason=reason)
        return None if booking is None else UUID(booking)

    @event("EntryLeft")
    def _entry_left(self, entry_id: UUID, reason: str) -> None:
        self._close(entry_id.hex, LEFT, reason)

    def make_offer(
        self,
        entry_id: UUID,
        booking_id: UUID,
        seats: list[str],
        general: dict[str, int],
        expires_at: datetime,
    ) -> None:
        entry = self._entry(entry_id)
        if entry.status != WAITING:  # at most one offer per entry
            raise EntryClosedError(entry_id, entry.status)
        self._offer_made(
            entry_id=entry_id,
            booking_id=booking_id,
            seats=list(seats),
            general=dict(general),
            expires_at=expires_at,
        )

    @event("OfferMade")
    def _offer_made(
        self,
        entry_id: UUID,
        booking_id: UUID,
        seats: list[str],
        general: dict[str, int],
        expires_at: datetime,
    ) -> None:
        key = entry_id.hex
        entry = self.entries[key]
        entry.status = OFFERED
        entry.booking = booking_id.hex
        entry.expires_at = expires_at
        self.waiting.pop(key, None)
        self.offered[key] = None

    def accept_offer(self, entry_id: UUID) -> None:
        """The offer's booking was confirmed."""
        entry = self._entry(entry_id)
        if entry.status != OFFERED or entry.booking is None:
            raise EntryClosedError(entry_id, entry.status)
        self._offer_accepted(entry_id=entry_id, booking_id=UUID(entry.booking))

    @event("OfferAccepted")
    def _offer_accepted(self, entry_id: UUID, booking_id: UUID) -> None:
        self._close(entry_id.hex, FULFILLED, None)

    def lapse_offer(self, entry_id: UUID, reason: str) -> None:
        """The offer ended unpaid (expired, declined, cancelled); or, for a waiting entry, the
        customer cannot take one (its booking is then the one the offer would have had)."""
        entry = self._entry(entry_id)
        if entry.status not in ACTIVE:
            raise EntryClosedError(entry_id, entry.status)
        booking = offer_booking_id_for(entry_id) if entry.booking is None else UUID(entry.booking)
        self._offer_lapsed(entry_id=entry_id, booking_id=booking, reason=reason)

    @event("OfferLapsed")
    def _offer_lapsed(self, entry_id: UUID, booking_id: UUID, reason: str) -> None:
        self._close(entry_id.hex, LAPSED, reason)

    def _entry(self, entry_id: UUID) -> WaitingEntry:
        entry = self.entries.get(entry_id.hex)
        if entry is None:
            raise EntryClosedError(entry_id, "unknown")
        return entry

    def _close(self, key: str, status: str, reason: str | None) -> None:
        entry = self.entries[key]
        entry.status = status
        entry.reason = reason
        self.waiting.pop(key, None)
        self.offered.pop(key, None)
        if self.active.get(entry.customer) == key:
            del self.active[entry.customer]


class WaitingListEntry(Aggregate):
    """Where an entry lives: its show and customer (created with the entry, never changed)."""

    @event("Created")
    def __init__(self, entry_id: UUID, show_id: UUID, customer_id: UUID) -> None:
        self.show_id = show_id
        self.customer_id = customer_id

    @staticmethod
    def create_id(entry_id: UUID, **_: Any) -> UUID:
        return entry_id
