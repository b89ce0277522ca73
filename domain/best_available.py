"""Best available: which seats a request for a quantity gets, from the inventory's state.

Adjacent seats nearest the front and centre of the best section, else any free seats in map
order, else general admission. A mixin of SeatInventory (domain/inventory.py), which owns the
state it reads: rows in map order, free seats per row and two memos that keep the search fast
late in a sell-out (`row_run_bound`, `first_open_row`). A seat that is held, sold or blocked is
not free.
"""

from __future__ import annotations

from collections.abc import Iterator

from domain.errors import CapacityExceededError, TicketLimitError, UnknownSectionError
from domain.seat_state import Row, SeatState
from domain.seatmap import GENERAL, SEATED

MAX_TICKETS_PER_BOOKING = 10


class BestAvailable(SeatState):
    """The search, over SeatInventory's state (domain/seat_state.py)."""

    def free_count(self) -> int:
        seated = sum(self.row_free.values())
        return seated + sum(g.left for g in self.general.values())

    def choose_best_available(
        self, quantity: int, section: str | None = None
    ) -> tuple[list[str], dict[str, int]]:
        """Pick seats for a best-available request: adjacent seats nearest the front and centre
        of the best section, else any free seats in map order, else general admission."""
        check_quantity(quantity)
        if section is not None:
            kind = self.section_kind.get(section)
            if kind is None:
                raise UnknownSectionError(section)
            if kind == GENERAL:
                return [], self._general_for(section, quantity)
            return self._seated_for(quantity, [section]), {}
        seated_sections = [s for s, k in self.section_kind.items() if k == SEATED]
        if sum(self.row_free.values()) >= quantity:
            return self._seated_for(quantity, seated_sections), {}
        for code, ga in self.general.items():
            if ga.left >= quantity:
                return [], {code: quantity}
        raise CapacityExceededError(None, quantity, self.free_count())

    def _general_for(self, section: str, quantity: int) -> dict[str, int]:
        left = self.general[section].left
        if left < quantity:
            raise CapacityExceededError(section, quantity, left)
        return {section: quantity}

    def _seated_for(self, quantity: int, sections: list[str]) -> list[str]:
        for row in self._open_rows(sections):
            key = row.key
            if self.row_free[key] >= quantity and self.row_run_bound[key] >= quantity:
                block = self._centre_block(key, row.seats, quantity)
                if block:
                    return block
        scattered: list[str] = []
        holder, blocked = self.holder, self.blocked
        for row in self._open_rows(sections):
            scattered.extend(s for s in row.seats if s not in holder and s not in blocked)
            if len(scattered) >= quantity:
                return scattered[:quantity]
        raise CapacityExceededError(
            sections[0] if len(sections) == 1 else None, quantity, len(scattered)
        )

    def _open_rows(self, sections: list[str]) -> Iterator[Row]:
        """Rows with a free seat, best first; lazily: the first row that fits ends a search."""
        rows, free = self.rows, self.row_free
        first = self.first_open_row
        while first < len(rows) and free[rows[first].key] == 0:
            first += 1
        self.first_open_row = first
        return (r for r in rows[first:] if free[r.key] > 0 and r.section in sections)

    def _centre_block(self, key: str, seats: list[str], quantity: int) -> list[str] | None:
        centre = (len(seats) - quantity) / 2
        best: int | None = None
        run = longest = 0
        holder, blocked = self.holder, self.blocked
        for i, seat in enumerate(seats):
            run = 0 if seat in holder or seat in blocked else run + 1
            longest = max(longest, run)
            if run >= quantity:
                start = i - quantity + 1
                if best is None or abs(start - centre) < abs(best - centre):
                    best = start
        if best is None:
            self.row_run_bound[key] = longest  # exact now; a memo, not a decision
            return None
        return seats[best : best + quantity]


def check_quantity(quantity: int) -> None:
    if not 1 <= quantity <= MAX_TICKETS_PER_BOOKING:
        raise TicketLimitError(quantity, MAX_TICKETS_PER_BOOKING)


def row_key(seat: str) -> str:
    """The row of a seat: SECTION-ROW of SECTION-ROW-NUMBER."""
    return seat.rsplit("-", 1)[0]
