"""SeatInventory: one per show; which seats are free, held (by which booking, until when) or sold.

Invariants: a seat is never held or sold by two bookings; a general-admission section never
exceeds its capacity; a booking holds 1 to MAX_TICKETS_PER_BOOKING tickets; a customer holds
and buys at most the show's cap per customer (fair share, DEFAULT_TICKETS_PER_CUSTOMER unless
the show set its own); no holds unless the sale is open and the show has not started; a customer
cannot keep seats forever by letting holds lapse and holding again (LapsedHoldLimit); a seat the
organiser blocked is neither held nor sold, and a GA section's capacity never goes below its
tickets held and sold (domain/seat_blocks.py); during the presale (PresaleOpened, until the sale
opens) only a hold with a presale code is accepted, and a code is never used by more held or
sold bookings than its `max_uses` (its definition is domain/presale.py's: the handler passes
the code and its limit; an unsold release gives the use back). Best-available is
domain/best_available.py. State is dicts and lists of strings, numbers and small records (Row,
Claim, GeneralSection, in domain/seat_state.py), which the event store's transcodings snapshot
as JSON; snapshots of older class versions are upcast.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.best_available import MAX_TICKETS_PER_BOOKING as MAX_TICKETS_PER_BOOKING
from domain.best_available import BestAvailable, check_quantity, row_key
from domain.errors import (
    CustomerTicketLimitError,
    HoldNotFoundError,
    InvalidShowError,
    LapsedHoldLimitError,
    SaleNotOpenError,
    SeatsUnavailableError,
    TicketLimitError,
    UnknownSeatsError,
    UnknownSectionError,
)
from domain.presale import CodeRequiredError, CodeUsedUpError
from domain.seat_blocks import (
    apply_block,
    apply_unblock,
    capacity_changes,
    seats_to_block,
    seats_to_unblock,
)
from domain.seat_state import Claim as Claim
from domain.seat_state import GeneralSection as GeneralSection
from domain.seat_state import Row as Row
from domain.seatmap import GENERAL, iter_seats

# Tickets one customer may hold and buy for one show, unless the show was scheduled with its
# own cap; also the cap of shows scheduled before shows had one.
DEFAULT_TICKETS_PER_CUSTOMER = 10
MAX_REMEMBERED_LAPSES = 20  # per customer: more than any sensible LapsedHoldLimit.times


@dataclass(frozen=True)
class LapsedHoldLimit:
    """A customer whose holds on a show lapsed (released unsold: expired, cancelled or
    declined) `times` times within `window` may not hold again until the oldest of those
    leaves the window. Without it, a bot could keep seats off sale by re-holding them every
    time its hold runs out. A lapse is dated by its release (`released_at`, recorded since
    SeatsReleased version 3; by the hold's expiry for releases stored before)."""

    times: int
    window: timedelta


class SeatInventory(BestAvailable, Aggregate):
    # Version 2 snapshots carry `starts_at` and `customer_limit` (upcast_v1_v2); version 3 ones
    # keep rows, claims and GA sections as records, not lists and dicts (upcast_v2_v3); version
    # 4 ones whether a hold was ever placed and the blocked seats (upcast_v3_v4); version 5
    # ones the presale and each code's uses (upcast_v4_v5).
    class_version = 5

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
            key = row_key(seat)
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
        self.blocked: dict[str, str] = {}  # seat -> why the organiser took it off sale
        self.ever_held = False  # a show that never had a hold may be deleted
        self.presale_open = False  # holds with a presale code only, until the sale opens
        self.code_uses: dict[str, int] = {}  # presale code -> bookings holding or bought with it

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

    @staticmethod
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """A snapshot taken before version 4: no seat was blocked then; whether a hold was ever
        placed is not known, so it is taken that one was (conservative: such a show cannot be
        deleted, only cancelled)."""
        state["blocked"] = {}
        state["ever_held"] = True

    @staticmethod
    def upcast_v4_v5(state: dict[str, Any]) -> None:
        """A snapshot taken before version 5: no presale had opened, no code was used."""
        state["presale_open"] = False
        state["code_uses"] = {}

    # --- queries (pure) ---

    def is_free(self, seat: str) -> bool:
        return seat in self.seat_tier and seat not in self.holder and seat not in self.blocked

    def claim_of(self, booking_id: UUID) -> Claim | None:
        return self.claims.get(booking_id.hex)

    def price_of(self, seats: list[str], general: dict[str, int]) -> int:
        seated = sum(self.price_tiers[self.seat_tier[s]] for s in seats)
        return seated + sum(self.price_tiers[self.general[g].tier] * n for g, n in general.items())

    def tiers_of(self, seats: list[str], general: dict[str, int]) -> set[str]:
        """The price tiers of these tickets (unknown seats and sections left out)."""
        tiers = {self.seat_tier[s] for s in seats if s in self.seat_tier}
        return tiers | {self.general[g].tier for g in general if g in self.general}

    def sections_of_tiers(self, tiers: set[str]) -> list[str]:
        """The sections (in map order) whose tickets are of one of these tiers."""
        seated = {row.section: self.seat_tier[row.seats[0]] for row in self.rows if row.seats}
        found = []
        for section in self.section_kind:
            tier = self.general[section].tier if section in self.general else seated.get(section)
            if tier in tiers:
                found.append(section)
        return found

    def tickets_of(self, customer_id: UUID) -> int:
        """Tickets the customer holds or bought for this show."""
        return self.customer_tickets.get(customer_id.hex, 0)

    def has_started(self, now: datetime, show_starts_at: datetime | None = None) -> bool:
        """Whether the show has started at `now`; `show_starts_at` stands in for the start an
        inventory created before it recorded one does not know (unknown: not started)."""
        starts_at = self._start(show_starts_at)
        return starts_at is not None and now >= starts_at

    def check_open(
        self, now: datetime | None, show_starts_at: datetime | None = None, code: str | None = None
    ) -> None:
        """Refuse holds unless the sale is open (or the presale, for a hold with a `code`) and,
        at `now`, the show has not started."""
        if not self.on_sale:
            if not self.presale_open:
                raise SaleNotOpenError(self.show_id, "not on sale")
            if code is None:
                raise CodeRequiredError(self.show_id)
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

    # --- commands ---

    def open_sale(self) -> None:
        if not self.on_sale:
            self._sale_opened()

    @event("SaleOpened")
    def _sale_opened(self) -> None:
        self.on_sale = True
        self.presale_open = False  # the presale ends where the general sale begins

    def close_sale(self) -> None:
        if self.on_sale or self.presale_open:
            self._sale_closed()

    @event("SaleClosed")
    def _sale_closed(self) -> None:
        self.on_sale = False
        self.presale_open = False

    def open_presale(self) -> bool:
        """Accept holds with a presale code (not once the sale is open); answers whether it
        changed anything."""
        if self.on_sale or self.presale_open:
            return False
        self._presale_opened()
        return True

    @event("PresaleOpened")
    def _presale_opened(self) -> None:
        self.presale_open = True

    def close_presale(self) -> None:
        """The presale moved to a later time (or was dropped): no code admits a hold until it
        opens again (holds made meanwhile keep their seats)."""
        if self.presale_open:
            self._presale_closed()

    @event("PresaleClosed")
    def _presale_closed(self) -> None:
        self.presale_open = False

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
        code: str | None = None,
        code_max_uses: int | None = None,
        offer: bool = False,
    ) -> None:
        """Hold seats for a booking. `customer_limit` is an operator-wide ceiling on top of the
        show's own cap per customer; `now` is the deciding clock's time, after the show's start
        nothing is held; `show_starts_at` stands in for the start an inventory created before
        it recorded one does not know. `code` is the presale code the hold is made with (the
        caller checked it is valid), used by at most `code_max_uses` bookings held or sold.
        `offer`: held for a waiting-list entry, not asked for by the customer (its lapse is
        not the customer's: LapsedHoldLimit does not count it)."""
        self.check_open(now, show_starts_at, code)
        if lapsed_limit is not None and now is not None:
            self._check_lapses(customer_id, lapsed_limit, now)
        quantity = len(seats) + sum(general.values())
        check_quantity(quantity)
        self.check_allowance(customer_id, quantity, customer_limit)
        if len(set(seats)) != len(seats):
            raise UnknownSeatsError(sorted({s for s in seats if seats.count(s) > 1}))
        unknown = [s for s in seats if s not in self.seat_tier]
        if unknown:
            raise UnknownSeatsError(unknown)
        for section, n in general.items():
            if section not in self.general:
                raise UnknownSectionError(section)
            if n < 1:
                raise TicketLimitError(n, MAX_TICKETS_PER_BOOKING)
            self._general_for(section, n)
        taken = [s for s in seats if s in self.holder or s in self.blocked]
        if taken:
            raise SeatsUnavailableError(taken)
        if booking_id.hex in self.claims:
            raise SeatsUnavailableError(seats)
        used = 0 if code is None else self.code_uses.get(code, 0)
        if code is not None and code_max_uses is not None and used >= code_max_uses:
            raise CodeUsedUpError(code, code_max_uses)
        self.trigger_event(
            self.SeatsHeld,
            booking_id=booking_id,
            customer_id=customer_id,
            seats=list(seats),
            general=dict(general),
            until=until,
            code=code,
            offer=offer,
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
        (declared, not made from a decorated method): `hold` stays the one signature.
        Version 2 also records the presale code it was held with (`code`) and whether it is a
        waiting-list offer (`offer`); older events are upcast to no code, no offer."""

        class_version = 2

        booking_id: UUID
        customer_id: UUID
        seats: list[str]
        general: dict[str, int]
        until: datetime
        code: str | None = None
        offer: bool = False

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["code"] = None
            state["offer"] = False

        def apply(self, aggregate: SeatInventory) -> None:
            key = self.booking_id.hex
            for seat in self.seats:
                aggregate.holder[seat] = key
                aggregate.row_free[row_key(seat)] -= 1
            for code, n in self.general.items():
                aggregate.general[code].taken += n
            claim = Claim(
                self.customer_id.hex,
                self.seats,
                self.general,
                self.until,
                code=self.code,
                offer=self.offer,
            )
            if self.code is not None:
                aggregate.code_uses[self.code] = aggregate.code_uses.get(self.code, 0) + 1
            aggregate.ever_held = True
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
            key = row_key(seat)
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
            if claim.code is not None:  # a lapse gives its code's use back
                uses = self.code_uses[claim.code] - 1
                if uses:
                    self.code_uses[claim.code] = uses
                else:
                    del self.code_uses[claim.code]
            if not claim.offer:  # an offer lapsing is no re-hold of the customer's
                lapses = self.lapses.setdefault(claim.customer, [])
                lapses.append(claim.until if released_at is None else released_at)
                del lapses[:-MAX_REMEMBERED_LAPSES]

    # --- the organiser's controls (decided in domain/seat_blocks.py) ---

    def reprice(self, tier: str, price_cents: int) -> None:
        """New holds pay `price_cents` per ticket of the tier. Held and sold tickets keep their
        price: a booking records its amount when it is placed (price_of at that moment)."""
        if tier not in self.price_tiers:
            raise InvalidShowError(f"unknown price tier: {tier}")
        if price_cents < 0:
            raise InvalidShowError(f"price tier {tier} has a negative price")
        if self.price_tiers[tier] != price_cents:
            self._tier_repriced(tier=tier, price_cents=price_cents)

    @event("TierRepriced")
    def _tier_repriced(self, tier: str, price_cents: int) -> None:
        self.price_tiers[tier] = price_cents

    def reschedule(self, starts_at: datetime) -> None:
        """The show starts at `starts_at` now: no hold from then on."""
        if starts_at != self.starts_at:
            self._rescheduled(starts_at=starts_at)

    @event("Rescheduled")
    def _rescheduled(self, starts_at: datetime) -> None:
        self.starts_at = starts_at

    def block(self, seats: list[str], reason: str) -> list[str]:
        """Take seats off sale; answers the seats newly blocked (already blocked ones keep
        their reason). A held or sold seat cannot be blocked (SeatsTakenError)."""
        newly = seats_to_block(self, seats, reason)
        if newly:
            self._seats_blocked(seats=newly, reason=reason)
        return newly

    @event("SeatsBlocked")
    def _seats_blocked(self, seats: list[str], reason: str) -> None:
        apply_block(self, seats, reason)

    def unblock(self, seats: list[str]) -> list[str]:
        """Put blocked seats back on sale; answers those that were blocked."""
        blocked = seats_to_unblock(self, seats)
        if blocked:
            self._seats_unblocked(seats=blocked)
        return blocked

    @event("SeatsUnblocked")
    def _seats_unblocked(self, seats: list[str]) -> None:
        apply_unblock(self, seats)

    def change_capacity(self, section: str, capacity: int) -> bool:
        """Set a GA section's capacity, not below its tickets held or sold; answers whether it
        changed."""
        if not capacity_changes(self, section, capacity):
            return False
        self._general_capacity_changed(section=section, capacity=capacity)
        return True

    @event("GeneralCapacityChanged")
    def _general_capacity_changed(self, section: str, capacity: int) -> None:
        self.general[section].capacity = capacity
