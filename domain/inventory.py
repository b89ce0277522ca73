"""SeatInventory: one per show; which seats are free, held (by which booking, until when) or sold.

Invariants: a seat is never held or sold by two bookings; a general-admission section never
exceeds its capacity; a booking holds 1 to MAX_TICKETS_PER_BOOKING tickets; a customer holds
and buys at most the show's cap per customer (fair share, DEFAULT_TICKETS_PER_CUSTOMER unless
the show set its own); no holds unless the sale is open and the show has not started; a customer
cannot keep seats forever by letting holds lapse and holding again (LapsedHoldLimit). State is
dicts and lists of strings, numbers and small records (Row, Claim, GeneralSection), which the
event store's transcodings snapshot as JSON; snapshots of older class versions are upcast.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    CapacityExceededError,
    CustomerTicketLimitError,
    HoldNotFoundError,
    LapsedHoldLimitError,
    SaleNotOpenError,
    SeatsUnavailableError,
    TicketLimitError,
    UnknownSeatsError,
    UnknownSectionError,
)
from domain.seatmap import GENERAL, SEATED, iter_seats

MAX_TICKETS_PER_BOOKING = 10
# Tickets one customer may hold and buy for one show, unless the show was scheduled with its
# own cap; also the cap of shows scheduled before shows had one.
DEFAULT_TICKETS_PER_CUSTOMER = 10
MAX_REMEMBERED_LAPSES = 20  # per customer: more than any sensible LapsedHoldLimit.times


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


@dataclass(frozen=True)
class LapsedHoldLimit:
    """A customer whose holds on a show lapsed (released unsold: expired, cancelled or
    declined) `times` times within `window` may not hold again until the oldest of those
    leaves the window. Without it, a bot could keep seats off sale by re-holding them every
    time its hold runs out. A lapse is dated by its release (`released_at`, recorded since
    SeatsReleased version 3; by the hold's expiry for releases stored before)."""

    times: int
    window: timedelta


class SeatInventory(Aggregate):
    # Version 2 snapshots carry `starts_at` and `customer_limit` (upcast_v1_v2); version 3 ones
    # keep rows, claims and GA sections as records, not lists and dicts (upcast_v2_v3).
    class_version = 3

    class Created(Aggregate.Created):
        """Version 2 also records when the show starts (no hold from then on) and its cap per
        customer. Version 1 events (stored before) are upcast to an unknown start (None: the
        handler asks the Show) and the default cap."""

        class_version = 2

        inventory_id: UUID
        show_id: UUID
        currency: str
        price_tiers: dict[str, int]
        sections: list[dict[str, Any]]
        starts_at: datetime | None
        max_tickets_per_customer: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["starts_at"] = None
            state["max_tickets_per_customer"] = DEFAULT_TICKETS_PER_CUSTOMER

    @event(Created)
    def __init__(
        self,
        inventory_id: UUID,
        show_id: UUID,
        currency: str,
        price_tiers: dict[str, int],
        sections: list[dict[str, Any]],
        starts_at: datetime | None = None,
        max_tickets_per_customer: int = DEFAULT_TICKETS_PER_CUSTOMER,
    ) -> None:
        self.show_id = show_id
        self.starts_at = starts_at
        self.customer_limit = max_tickets_per_customer
        self.currency = currency
        self.price_tiers = dict(price_tiers)
        self.on_sale = False
        self.seat_tier: dict[str, str] = {}
        self.rows: list[Row] = []
        self.row_free: dict[str, int] = {}  # row key -> free seats
        self.general: dict[str, GeneralSection] = {}
        self.section_kind: dict[str, str] = {}
        for section in sections:
            self.section_kind[section["code"]] = section["kind"]
            if section["kind"] == GENERAL:
                self.general[section["code"]] = GeneralSection(
                    section["tier"], int(section["capacity"])
                )
        for seat, section_code, tier in iter_seats(sections):
            self.seat_tier[seat] = tier
            key = _row_key(seat)
            if not self.rows or self.rows[-1].key != key:
                self.rows.append(Row(section_code, key, []))
                self.row_free[key] = 0
            self.rows[-1].seats.append(seat)
            self.row_free[key] += 1
        # An upper bound of each row's longest run of free seats: lets best-available skip
        # fragmented rows without rescanning them (holds only shorten runs; releases reset it).
        self.row_run_bound: dict[str, int] = dict(self.row_free)
        # Also a memo: every row before this index is full, so searches start here (late in a
        # sell-out most rows are full). Releases reset it.
        self.first_open_row = 0
        self.holder: dict[str, str] = {}  # seat -> booking id (hex) while held or sold
        self.claims: dict[str, Claim] = {}  # booking id (hex) -> what it holds or bought
        self.customer_tickets: dict[str, int] = {}  # customer id (hex) -> tickets held or sold
        self.lapses: dict[str, list[datetime]] = {}  # customer id (hex) -> when holds lapsed

    @staticmethod
    def create_id(inventory_id: UUID, **_: Any) -> UUID:
        return inventory_id

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before version 2: start unknown, the default cap. The oldest ones
        also predate the memo of full rows and the record of lapses: none known."""
        state["starts_at"] = None
        state["customer_limit"] = DEFAULT_TICKETS_PER_CUSTOMER
        state.setdefault("first_open_row", 0)
        state.setdefault("lapses", {})

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot taken before version 3 kept rows as [section, key, seats] lists, GA
        sections and claims as dicts of their fields: the same values, as records."""
        state["rows"] = [Row(section, key, seats) for section, key, seats in state["rows"]]
        state["general"] = {
            code: GeneralSection(ga["tier"], ga["capacity"], ga["taken"])
            for code, ga in state["general"].items()
        }
        state["claims"] = {
            booking: Claim(c["customer"], c["seats"], c["general"], c["until"], c["sold"])
            for booking, c in state["claims"].items()
        }

    # --- queries (pure) ---

    def is_free(self, seat: str) -> bool:
        return seat in self.seat_tier and seat not in self.holder

    def claim_of(self, booking_id: UUID) -> Claim | None:
        return self.claims.get(booking_id.hex)

    def price_of(self, seats: list[str], general: dict[str, int]) -> int:
        seated = sum(self.price_tiers[self.seat_tier[s]] for s in seats)
        return seated + sum(self.price_tiers[self.general[g].tier] * n for g, n in general.items())

    def free_count(self) -> int:
        seated = sum(self.row_free.values())
        general = sum(g.left for g in self.general.values())
        return seated + general

    def tickets_of(self, customer_id: UUID) -> int:
        """Tickets the customer holds or bought for this show."""
        return self.customer_tickets.get(customer_id.hex, 0)

    def has_started(self, now: datetime, show_starts_at: datetime | None = None) -> bool:
        """Whether the show has started at `now`; `show_starts_at` stands in for the start an
        inventory created before it recorded one does not know (unknown: not started)."""
        starts_at = self._start(show_starts_at)
        return starts_at is not None and now >= starts_at

    def check_open(self, now: datetime | None, show_starts_at: datetime | None = None) -> None:
        """Refuse holds unless the sale is open and, at `now`, the show has not started."""
        if not self.on_sale:
            raise SaleNotOpenError(self.show_id, "not on sale")
        if now is not None and self.has_started(now, show_starts_at):
            started = self._start(show_starts_at)
            assert started is not None
            raise SaleNotOpenError(self.show_id, f"started at {started.isoformat()}")

    def _start(self, show_starts_at: datetime | None) -> datetime | None:
        return self.starts_at if self.starts_at is not None else show_starts_at

    def check_allowance(self, customer_id: UUID, quantity: int, ceiling: int | None = None) -> None:
        """Refuse `quantity` more tickets beyond the customer's share of this show: the show's
        cap per customer, or the operator-wide `ceiling` if lower."""
        limit = self.customer_limit if ceiling is None else min(self.customer_limit, ceiling)
        already = self.tickets_of(customer_id)
        if already + quantity > limit:
            raise CustomerTicketLimitError(limit, already, quantity)

    def expired_holds(self, now: datetime) -> list[UUID]:
        return [UUID(b) for b, c in self.claims.items() if not c.sold and c.until <= now]

    def choose_best_available(
        self, quantity: int, section: str | None = None
    ) -> tuple[list[str], dict[str, int]]:
        """Pick seats for a best-available request: adjacent seats nearest the front and centre
        of the best section, else any free seats in map order, else general admission."""
        _check_quantity(quantity)
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
        for row in self._open_rows(sections):
            scattered.extend(s for s in row.seats if s not in self.holder)
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
        for i, seat in enumerate(seats):
            run = 0 if seat in self.holder else run + 1
            longest = max(longest, run)
            if run >= quantity:
                start = i - quantity + 1
                if best is None or abs(start - centre) < abs(best - centre):
                    best = start
        if best is None:
            self.row_run_bound[key] = longest  # exact now; a memo, not a decision
            return None
        return seats[best : best + quantity]

    # --- commands ---

    def open_sale(self) -> None:
        if not self.on_sale:
            self._sale_opened()

    @event("SaleOpened")
    def _sale_opened(self) -> None:
        self.on_sale = True

    def close_sale(self) -> None:
        if self.on_sale:
            self._sale_closed()

    @event("SaleClosed")
    def _sale_closed(self) -> None:
        self.on_sale = False

    def hold(
        self,
        booking_id: UUID,
        customer_id: UUID,
        seats: list[str],
        general: dict[str, int],
        until: datetime,
        customer_limit: int | None = None,
        lapsed_limit: LapsedHoldLimit | None = None,
        now: datetime | None = None,
        show_starts_at: datetime | None = None,
    ) -> None:
        """Hold seats for a booking. `customer_limit` is an operator-wide ceiling on top of the
        show's own cap per customer; `now` is the deciding clock's time, after the show's start
        nothing is held; `show_starts_at` stands in for the start an inventory created before
        it recorded one does not know."""
        self.check_open(now, show_starts_at)
        if lapsed_limit is not None and now is not None:
            self._check_lapses(customer_id, lapsed_limit, now)
        quantity = len(seats) + sum(general.values())
        _check_quantity(quantity)
        self.check_allowance(customer_id, quantity, customer_limit)
        if len(set(seats)) != len(seats):
            raise UnknownSeatsError(sorted({s for s in seats if seats.count(s) > 1}))
        unknown = [s for s in seats if s not in self.seat_tier]
        if unknown:
            raise UnknownSeatsError(unknown)
        for code, n in general.items():
            if code not in self.general:
                raise UnknownSectionError(code)
            if n < 1:
                raise TicketLimitError(n, MAX_TICKETS_PER_BOOKING)
            self._general_for(code, n)
        taken = [s for s in seats if s in self.holder]
        if taken:
            raise SeatsUnavailableError(taken)
        if booking_id.hex in self.claims:
            raise SeatsUnavailableError(seats)
        self.trigger_event(
            self.SeatsHeld,
            booking_id=booking_id,
            customer_id=customer_id,
            seats=list(seats),
            general=dict(general),
            until=until,
        )

    def _check_lapses(self, customer_id: UUID, limit: LapsedHoldLimit, now: datetime) -> None:
        lapses = self.lapses.get(customer_id.hex, [])
        recent = sorted(t for t in lapses if t > now - limit.window)
        if len(recent) >= limit.times:
            # Once the oldest lapse that still keeps the count at the limit leaves the window.
            allowed_at = recent[len(recent) - limit.times] + limit.window
            raise LapsedHoldLimitError(len(recent), limit.window, allowed_at - now)

    class SeatsHeld(Aggregate.Event):
        """Seats and GA tickets held for a booking until `until`. The event applies itself
        (declared, not made from a decorated method): `hold` stays the one signature."""

        booking_id: UUID
        customer_id: UUID
        seats: list[str]
        general: dict[str, int]
        until: datetime

        def apply(self, aggregate: SeatInventory) -> None:
            key = self.booking_id.hex
            for seat in self.seats:
                aggregate.holder[seat] = key
                aggregate.row_free[_row_key(seat)] -= 1
            for code, n in self.general.items():
                aggregate.general[code].taken += n
            claim = Claim(self.customer_id.hex, self.seats, self.general, self.until)
            aggregate.claims[key] = claim
            tickets = aggregate.customer_tickets
            tickets[claim.customer] = tickets.get(claim.customer, 0) + claim.quantity

    def sell(self, booking_id: UUID) -> None:
        claim = self.claims.get(booking_id.hex)
        if claim is None or claim.sold:
            raise HoldNotFoundError(booking_id)
        self._seats_sold(booking_id=booking_id)

    @event("SeatsSold")
    def _seats_sold(self, booking_id: UUID) -> None:
        self.claims[booking_id.hex].sold = True

    def release(self, booking_id: UUID, reason: str, at: datetime | None = None) -> None:
        """Free whatever the booking holds or bought (cancellation, expiry, refund); `at` is
        the deciding clock's time, which dates a lapsed hold (LapsedHoldLimit)."""
        claim = self.claims.get(booking_id.hex)
        if claim is None:
            raise HoldNotFoundError(booking_id)
        self._seats_released(
            booking_id=booking_id,
            reason=reason,
            seats=list(claim.seats),
            general=dict(claim.general),
            released_at=at,
        )

    class SeatsReleased(Aggregate.Event):
        """Version 2 also records what was released (`seats`, `general`), so the log alone
        tells which seats a release freed. Version 1 events (stored before) lack both: they are
        upcast to None, "whatever the booking's claim held", which replaying still frees.
        Version 3 also records when (`released_at`); older events are upcast to None, and their
        lapse is dated by the hold's expiry instead."""

        class_version = 3

        booking_id: UUID
        reason: str
        seats: list[str] | None
        general: dict[str, int] | None
        released_at: datetime | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["seats"] = None
            state["general"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["released_at"] = None

    @event(SeatsReleased)
    def _seats_released(
        self,
        booking_id: UUID,
        reason: str,
        seats: list[str] | None = None,
        general: dict[str, int] | None = None,
        released_at: datetime | None = None,
    ) -> None:
        claim = self.claims.pop(booking_id.hex)
        for seat in claim.seats:
            del self.holder[seat]
            key = _row_key(seat)
            self.row_free[key] += 1
            self.row_run_bound[key] = self.row_free[key]
        self.first_open_row = 0
        for code, n in claim.general.items():
            self.general[code].taken -= n
        left = self.customer_tickets[claim.customer] - claim.quantity
        if left:
            self.customer_tickets[claim.customer] = left
        else:  # the customer's whole allowance is back; keeps snapshots small
            del self.customer_tickets[claim.customer]
        if not claim.sold:
            lapses = self.lapses.setdefault(claim.customer, [])
            lapses.append(claim.until if released_at is None else released_at)
            del lapses[:-MAX_REMEMBERED_LAPSES]


def _row_key(seat: str) -> str:
    return seat.rsplit("-", 1)[0]


def _check_quantity(quantity: int) -> None:
    if not 1 <= quantity <= MAX_TICKETS_PER_BOOKING:
        raise TicketLimitError(quantity, MAX_TICKETS_PER_BOOKING)
