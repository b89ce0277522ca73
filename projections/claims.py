"""What projections following SeatInventory events need to remember between pages: which show
an inventory belongs to (its later events carry only the inventory id) and what each live
booking holds or bought (SeatsSold and SeatsReleased carry only the booking id).

Each projection keeps its own copy of these tables in its own schema, so that it can be
rebuilt on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from domain.inventory import SeatInventory
from infra.log_follower import LoggedEvent
from projections.base import Page, event_type
from projections.tables import Table

INVENTORY_CREATED = event_type(SeatInventory, "Created")
SEATS_HELD = event_type(SeatInventory, "SeatsHeld")
SEATS_SOLD = event_type(SeatInventory, "SeatsSold")
SEATS_RELEASED = event_type(SeatInventory, "SeatsReleased")
_BY_BOOKING = (SEATS_SOLD, SEATS_RELEASED)
_OF_INVENTORY = (SEATS_HELD, SEATS_SOLD, SEATS_RELEASED)

INVENTORIES = Table(
    "inventories",
    columns=(("inventory_id", "uuid NOT NULL"), ("show_id", "uuid NOT NULL")),
    key=("inventory_id",),
)
CLAIMS = Table(  # what each booking holds, seat by seat (for the seat map)
    "claims",
    columns=(
        ("booking_id", "uuid NOT NULL"),
        ("show_id", "uuid NOT NULL"),
        ("seats", "jsonb NOT NULL"),
        ("general", "jsonb NOT NULL"),
        ("sold", "boolean NOT NULL"),
    ),
    key=("booking_id",),
)
CLAIM_COUNTS = Table(  # how many tickets each booking holds (enough for counting)
    "claims",
    columns=(
        ("booking_id", "uuid NOT NULL"),
        ("show_id", "uuid NOT NULL"),
        ("quantity", "integer NOT NULL"),
        ("sold", "boolean NOT NULL"),
    ),
    key=("booking_id",),
)


def section_of(seat: str) -> str:
    """A seat id is SECTION-ROW-NUMBER (domain/seatmap.py)."""
    return seat.split("-", 1)[0]


@dataclass(frozen=True)
class Claim:
    """What one booking holds (or bought) in one show, as it was before the event at hand
    (seats and general admission only where the claims table keeps them)."""

    booking_id: UUID
    show_id: UUID
    quantity: int
    sold: bool
    seats: list[str] = field(default_factory=list)
    general: dict[str, int] = field(default_factory=dict)

    def per_section(self) -> dict[str, int]:
        counts = dict(self.general)
        for seat in self.seats:
            section = section_of(seat)
            counts[section] = counts.get(section, 0) + 1
        return counts

    @classmethod
    def of(cls, row: dict[str, Any]) -> Claim:
        seats, general = row.get("seats", []), row.get("general", {})
        quantity = row.get("quantity", len(seats) + sum(general.values()))
        return cls(row["booking_id"], row["show_id"], quantity, row["sold"], seats, general)


class Claims:
    """Inventory ids to show ids (cached: they never change) and the live claims, in the
    given claims table (CLAIMS or CLAIM_COUNTS)."""

    def __init__(self, claims: Table) -> None:
        self._shows: dict[UUID, UUID] = {}
        self.claims = claims
        self.tables = (INVENTORIES, claims)
        self._detailed = "seats" in claims.column_names

    def prepare(
        self, conn: psycopg.Connection[Any], schema: str, page: Page, events: Sequence[LoggedEvent]
    ) -> None:
        inventories: set[UUID] = set()
        bookings: set[UUID] = set()
        for logged in events:
            kind = type(logged.event)
            if kind in _OF_INVENTORY and logged.event.originator_id not in self._shows:
                inventories.add(logged.event.originator_id)
            if kind in _BY_BOOKING:
                bookings.add(logged.event.booking_id)
        page[INVENTORIES].load(conn, schema, inventories)
        for row in page[INVENTORIES].loaded.values():
            self._shows[row["inventory_id"]] = row["show_id"]
        page[self.claims].load(conn, schema, bookings)

    def created(self, page: Page, e: Any) -> UUID:
        self._shows[e.originator_id] = e.show_id
        page[INVENTORIES].insert({"inventory_id": e.originator_id, "show_id": e.show_id})
        show_id: UUID = e.show_id
        return show_id

    def held(self, page: Page, e: Any) -> Claim | None:
        show_id = self._shows.get(e.originator_id)
        if show_id is None:
            return None  # an inventory this read model never saw created
        seats, general = list(e.seats), dict(e.general)
        quantity = len(seats) + sum(general.values())
        row: dict[str, Any] = {"booking_id": e.booking_id, "show_id": show_id, "sold": False}
        if self._detailed:
            row.update(seats=seats, general=general)
        else:
            row["quantity"] = quantity
        page[self.claims].insert(row)
        return Claim(e.booking_id, show_id, quantity, False, seats, general)

    def sold(self, page: Page, e: Any) -> Claim | None:
        row = page[self.claims].get(e.booking_id)
        if row is None or row["sold"]:
            return None
        claim = Claim.of(row)
        page[self.claims].set(e.booking_id, sold=True)
        return claim

    def released(self, page: Page, e: Any) -> Claim | None:
        row = page[self.claims].get(e.booking_id)
        if row is None:
            return None
        claim = Claim.of(row)
        page[self.claims].delete(e.booking_id)
        return claim
