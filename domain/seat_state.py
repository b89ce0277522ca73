"""The state of a show's seats that SeatInventory (domain/inventory.py) keeps and the modules
deciding over it read: best-available (domain/best_available.py) and seat blocks
(domain/seat_blocks.py). Small records, which the event store's transcodings snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Row:
    """A row of a seated section: its seats in map order."""

    section: str
    key: str  # "SECTION-ROW": every seat id of the row starts with it
    seats: list[str]


@dataclass(slots=True)
class Claim:
    """What one booking holds or bought on the show."""

    customer: str  # the customer's id (hex)
    seats: list[str]
    general: dict[str, int]  # GA section code -> tickets
    until: datetime  # when the hold runs out unless sold
    sold: bool = False
    code: str | None = None  # the presale code it was held with (last: older snapshots lack it)
    offer: bool = False  # held for a waiting-list entry (appended: older snapshots lack it)

    @property
    def quantity(self) -> int:
        return len(self.seats) + sum(self.general.values())


@dataclass(slots=True)
class GeneralSection:
    """A general-admission section: tickets by count, not by seat."""

    tier: str
    capacity: int
    taken: int = 0

    @property
    def left(self) -> int:
        return self.capacity - self.taken


class SeatState:
    """The attributes of SeatInventory's state that its helpers read and change."""

    rows: list[Row]
    row_free: dict[str, int]  # row key -> free seats (neither held, sold nor blocked)
    row_run_bound: dict[str, int]  # row key -> upper bound of its longest free run
    first_open_row: int  # every row before it is full
    holder: dict[str, str]  # seat -> booking id (hex) while held or sold
    blocked: dict[str, str]  # seat -> why it is off sale
    section_kind: dict[str, str]
    general: dict[str, GeneralSection]
    claims: dict[str, Claim]  # booking id (hex) -> what it holds or bought
    seat_tier: dict[str, str]  # seat -> its price tier
