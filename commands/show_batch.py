"""What one decision of a show's writer sees (`ShowBatch`): the show's inventory, its door list
and its other aggregates (`Companions`: the waiting list, the presale codes), and the bookings
the batch touches; what the writer saves after the batch is what they changed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from commands.errors import NotFoundError
from commands.ports import EventStore
from domain.account import Account
from domain.booking import Booking
from domain.door import DoorList
from domain.ids import door_list_id_for
from domain.inventory import SeatInventory
from domain.show import Show

A = TypeVar("A", bound=Aggregate)

UNKNOWN_HOLDER = "Ticket holder"


class ShowBatch:
    """What a decision sees: the show's inventory, its door list (tickets) and the bookings it
    touches in this batch."""

    def __init__(
        self,
        inventory: SeatInventory,
        store: EventStore,
        door_lists: Callable[[], DoorList] | None = None,
        companions: Companions | None = None,
    ) -> None:
        self.inventory = inventory
        self._store = store
        self._companions = Companions(store) if companions is None else companions
        self._companion_pending_at_load: dict[UUID, int] = {}
        self._bookings: dict[UUID, Booking] = {}
        self._show: Show | None = None
        self._touched: list[Booking] = []  # bookings the current decision looked at
        self._door_lists = door_lists
        self._door_list: DoorList | None = None
        self._door_pending_at_load = 0  # its Created, when this batch created it
        self._names: dict[UUID, str] = {}  # ticket holders' names, by account

    def door_list(self) -> DoorList:
        """The show's tickets, loaded on first use (a show without tickets yet gets an empty
        door list, saved with the batch). Batches that never ask do not load it."""
        if self._door_list is None:
            if self._door_lists is not None:
                door = self._door_lists()
            else:
                door = load_door_list(self._store, self.inventory.show_id)
            self._door_list = door
            # Creating it is no change a failing decision made half-way.
            self._door_pending_at_load = len(door.pending_events)
        return self._door_list

    def companion(self, aggregate_id: UUID, kind: type[A], new: Callable[[], A]) -> A:
        """Another aggregate of the show decided in its writer (its waiting list, its presale
        codes): loaded on first use, or `new()` if it has none yet (saved with the batch once
        the decision changed it). Cached by the writer between batches like the inventory."""
        found = self.find_companion(aggregate_id, kind)
        if found is None:
            found = new()
            if found.id != aggregate_id:  # its class must derive the id (create_id)
                raise ValueError(f"a new {kind.__name__} has id {found.id}, not {aggregate_id}")
            self._companions.adopt(aggregate_id, found)
            # Creating it is no change a failing decision made half-way.
            self._companion_pending_at_load[aggregate_id] = len(found.pending_events)
        return found

    def find_companion(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """The companion aggregate if the show has one (None: never created, nothing made)."""
        found = self._companions.find(aggregate_id, kind)
        if found is not None and aggregate_id not in self._companion_pending_at_load:
            self._companion_pending_at_load[aggregate_id] = len(found.pending_events)
        return found

    def show(self) -> Show:
        """The Show aggregate itself, loaded on first use (sale status changes need it)."""
        if self._show is None:
            self._show = self._store.get(self.inventory.show_id, Show)
        return self._show

    def show_starts_at(self) -> datetime:
        """When the show starts: the inventory knows (inventories created before they recorded
        it ask the Show, loaded once per batch)."""
        known = self.inventory.starts_at
        return self.show().starts_at if known is None else known

    def booking(self, booking_id: UUID) -> Booking:
        found = self._bookings.get(booking_id)
        if found is None:
            found = self._store.get(booking_id, Booking)
            self._bookings[booking_id] = found
        self._touched.append(found)
        return found

    def holder_name(self, account_id: UUID) -> str:
        """The name tickets print for an account (its current name; a booking whose customer
        has no account, e.g. made by a script, gets a generic one)."""
        name = self._names.get(account_id)
        if name is None:
            try:
                name = self._store.get(account_id, Account).name
            except NotFoundError:
                name = UNKNOWN_HOLDER
            self._names[account_id] = name
        return name

    def booking_exists(self, booking_id: UUID) -> bool:
        return booking_id in self._bookings or self._store.exists(booking_id)

    def add_booking(self, booking: Booking) -> None:
        self._bookings[booking.id] = booking
        self._touched.append(booking)

    def begin_decision(self) -> int:
        """Start a decision; returns the pending-event count to compare after it."""
        self._touched = []
        return self.pending_count()

    def pending_count(self) -> int:
        """Pending events of what the current decision can have changed (cheap per decision)."""
        shows: list[Aggregate] = [] if self._show is None else [self._show]
        candidates: list[Aggregate] = [self.inventory, *shows, *self._touched]
        door = self._door_list
        door_pending = 0 if door is None else len(door.pending_events) - self._door_pending_at_load
        companions = sum(
            len(self._companions.loaded(aggregate_id).pending_events) - at_load
            for aggregate_id, at_load in self._companion_pending_at_load.items()
        )
        return sum(len(a.pending_events) for a in candidates) + door_pending + companions

    def decided(self) -> list[Aggregate]:
        """What the current decision can have changed (its events are its span's)."""
        shows: list[Aggregate] = [] if self._show is None else [self._show]
        door = [] if self._door_list is None else [self._door_list]
        companions = [self._companions.loaded(i) for i in self._companion_pending_at_load]
        return [self.inventory, *shows, *self._touched, *door, *companions]

    def changed(self) -> list[Aggregate]:
        shows: list[Aggregate] = [] if self._show is None else [self._show]
        # The door list last: on a tie of timestamps the log keeps this order, and a booking's
        # confirmation (or cancellation) must come before its tickets' issue (or voiding).
        doors: list[Aggregate] = [] if self._door_list is None else [self._door_list]
        companions = [self._companions.loaded(i) for i in self._companion_pending_at_load]
        everything: list[Aggregate] = [
            self.inventory,
            *shows,
            *self._bookings.values(),
            *companions,
            *doors,
        ]
        return [a for a in everything if a.pending_events]


class Companions:
    """A show's other aggregates decided in its writer, cached between batches; each one's
    version is checked against the store at its first use in a drain (another process may
    have written it), and absence is cached too (a show without a waiting list costs one
    version query per drain, not a load per batch)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._cached: dict[UUID, Aggregate | None] = {}  # None: the store has none
        self._checked: set[UUID] = set()

    def new_drain(self) -> None:
        self._checked.clear()

    def forget(self) -> None:
        self._cached.clear()
        self._checked.clear()

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        if aggregate_id not in self._checked:
            self._checked.add(aggregate_id)
            version = self._store.version_of(aggregate_id)
            cached = self._cached.get(aggregate_id)
            fresh = (cached is None and version is None and aggregate_id in self._cached) or (
                cached is not None and not cached.pending_events and cached.version == version
            )
            if not fresh:
                self._cached[aggregate_id] = (
                    None if version is None else self._store.get(aggregate_id, kind)
                )
        found = self._cached.get(aggregate_id)
        if found is not None and not isinstance(found, kind):
            raise NotFoundError(kind.__name__, aggregate_id)
        return found

    def adopt(self, aggregate_id: UUID, aggregate: Aggregate) -> None:
        self._cached[aggregate_id] = aggregate

    def loaded(self, aggregate_id: UUID) -> Aggregate:
        found = self._cached.get(aggregate_id)
        assert found is not None, aggregate_id
        return found


def load_door_list(store: EventStore, show_id: UUID) -> DoorList:
    """The show's door list from the store, or a new (unsaved) one if it has none yet."""
    try:
        return store.get(door_list_id_for(show_id), DoorList)
    except NotFoundError:
        return DoorList(show_id=show_id)
