"""The rules every point of the log must satisfy, checked incrementally while it is replayed.

Every aggregate is rebuilt in memory by applying its events in log order (`event.mutate`);
before an event is applied, the rules it could break are checked against the state it meets:

- a seat is never held or sold by two bookings at once; a GA section never exceeds its capacity;
- a confirmed booking has exactly one successful payment (when confirmed, and ever after);
- a refund belongs to a cancelled (or expired) booking that was paid, and at most what was paid;
- the revenue per show (payments and refunds) equals the sales read model at its position;
- each stream is a gapless sequence of versions whose events apply to the state they meet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate, OriginatorVersionError

from domain.booking import CANCELLED, CONFIRMED, EXPIRED, Booking
from domain.inventory import SeatInventory
from domain.show import Show

# Rule names, as reports and tests name them.
SEAT_TAKEN = "seat-held-twice"
UNKNOWN_SEAT = "unknown-seat"
GA_OVER_CAPACITY = "ga-over-capacity"
CLAIMED_TWICE = "booking-claims-twice"
CONFIRMED_PAYMENTS = "confirmed-without-exactly-one-payment"
REFUND_NOT_DUE = "refund-not-of-cancelled-paid-booking"
REVENUE_MISMATCH = "revenue-differs-from-sales-read-model"
VERSION_GAP = "stream-version-gap"
UNAPPLIABLE = "event-does-not-apply"
UNDECODABLE = "record-not-decodable"


@dataclass(frozen=True)
class Violation:
    position: int
    stream_id: UUID | None
    rule: str
    message: str

    def __str__(self) -> str:
        stream = "-" if self.stream_id is None else str(self.stream_id)
        return f"position {self.position}  stream {stream}  {self.rule}: {self.message}"


@dataclass(frozen=True)
class Revenue:
    paid_cents: int = 0
    refunded_cents: int = 0


@dataclass(frozen=True)
class RevenueSnapshot:
    """What a read model says the revenue per show was, once it had applied `position`."""

    source: str
    position: int
    shows: dict[UUID, Revenue]


class RevenueUnavailableError(Exception):
    """There is nothing to compare the revenue with; the message says why."""


class RevenueSource(Protocol):
    """Where `verify` gets the revenue to compare with (pluggable: the sales read model)."""

    def snapshot(self, conn: psycopg.Connection[Any]) -> RevenueSnapshot:
        """Raises RevenueUnavailableError when there is nothing to compare with."""
        ...


Check = Callable[["Invariants", int, Any, Any], None]


class Invariants:
    """Feed it every event in log order (`apply`); it keeps the aggregates and the findings."""

    def __init__(self, max_kept: int = 1000) -> None:
        self.aggregates: dict[UUID, Aggregate] = {}
        self.payments: dict[UUID, int] = {}  # booking -> successful payments received
        self.revenue: dict[UUID, list[int]] = {}  # show -> [paid cents, refunded cents]
        self.violations: list[Violation] = []
        self.violation_count = 0
        self.events = 0
        self._max_kept = max_kept

    def report(self, position: int, stream_id: UUID | None, rule: str, message: str) -> None:
        self.violation_count += 1
        if len(self.violations) < self._max_kept:
            self.violations.append(Violation(position, stream_id, rule, message))

    def apply(self, position: int, event: Any) -> None:
        self.events += 1
        stream = event.originator_id
        aggregate = self.aggregates.get(stream)
        if aggregate is not None:
            check = CHECKS.get(type(event))
            if check is not None:
                check(self, position, event, aggregate)
        try:
            self.aggregates[stream] = event.mutate(aggregate)
        except OriginatorVersionError:
            self._out_of_sequence(position, event, aggregate)
        except Exception as error:  # a stored event that does not apply is a finding
            self._does_not_apply(position, event, error)

    def _out_of_sequence(self, position: int, event: Any, aggregate: Aggregate | None) -> None:
        """A version missing before this event (deleted?) or repeated: report it, then go on
        from what the stream says, so one gap is one finding."""
        stream, version = event.originator_id, event.originator_version
        if aggregate is None:
            self._does_not_apply(position, event, LookupError("no earlier event"))
            return
        self.report(
            position,
            stream,
            VERSION_GAP,
            f"{type(event).__qualname__} is version {version}, expected {aggregate.version + 1}",
        )
        if version > aggregate.version:
            aggregate.version = version - 1
            try:
                self.aggregates[stream] = event.mutate(aggregate)
            except Exception as error:  # as in apply
                self._does_not_apply(position, event, error)

    def _does_not_apply(self, position: int, event: Any, error: Exception) -> None:
        if self.aggregates.get(event.originator_id) is None and event.originator_version != 1:
            message = f"{type(event).__qualname__} v{event.originator_version} starts the stream"
            self.report(position, event.originator_id, VERSION_GAP, message)
            return
        self.report(
            position,
            event.originator_id,
            UNAPPLIABLE,
            f"{type(event).__qualname__} does not apply to the stream's state "
            f"({type(error).__name__}: {error})",
        )

    def compare_revenue(self, expected: RevenueSnapshot) -> None:
        """At `expected.position`: the log's revenue per show against the read model's."""
        shows = {s for s, a in self.aggregates.items() if isinstance(a, Show)}
        for show_id in sorted(shows | expected.shows.keys()):
            paid, refunded = self.revenue.get(show_id, (0, 0))
            said = expected.shows.get(show_id)
            if said is None:
                self.report(
                    expected.position, show_id, REVENUE_MISMATCH, f"not in {expected.source}"
                )
                continue
            if show_id not in shows:
                self.report(
                    expected.position,
                    show_id,
                    REVENUE_MISMATCH,
                    f"{expected.source} has a show the log does not have",
                )
                continue
            if (said.paid_cents, said.refunded_cents) != (paid, refunded):
                self.report(
                    expected.position,
                    show_id,
                    REVENUE_MISMATCH,
                    f"log: paid {paid}, refunded {refunded} cents; {expected.source}: "
                    f"paid {said.paid_cents}, refunded {said.refunded_cents} cents",
                )

    # --- the checks, each before its event is applied ---

    def _seats_held(self, position: int, e: Any, inventory: SeatInventory) -> None:
        key = e.booking_id.hex
        if key in inventory.claims:
            self.report(
                position,
                e.originator_id,
                CLAIMED_TWICE,
                f"booking {e.booking_id} already holds seats on this show",
            )
        holder = inventory.holder
        for seat in e.seats:
            other = holder.get(seat)
            if other is not None:
                sold = inventory.claims.get(other, {}).get("sold", False)
                self.report(
                    position,
                    e.originator_id,
                    SEAT_TAKEN,
                    f"seat {seat} held for booking {e.booking_id} while "
                    f"{'sold to' if sold else 'held by'} booking {UUID(other)}",
                )
            elif seat not in inventory.seat_tier:
                self.report(position, e.originator_id, UNKNOWN_SEAT, f"no seat {seat} in the map")
        for code, n in e.general.items():
            ga = inventory.general.get(code)
            if ga is None:
                self.report(position, e.originator_id, UNKNOWN_SEAT, f"no GA section {code}")
            elif ga["taken"] + n > ga["capacity"]:
                self.report(
                    position,
                    e.originator_id,
                    GA_OVER_CAPACITY,
                    f"GA section {code}: {ga['taken']} taken + {n} for booking {e.booking_id} "
                    f"> capacity {ga['capacity']}",
                )

    def _paid(self, position: int, e: Any, booking: Booking) -> None:
        count = self.payments.get(e.originator_id, 0) + 1
        self.payments[e.originator_id] = count
        if booking.status == CONFIRMED:
            self.report(
                position,
                e.originator_id,
                CONFIRMED_PAYMENTS,
                f"confirmed booking received successful payment number {count}",
            )
        self._add_revenue(booking.show_id, e.amount_cents, 0)

    def _confirmed(self, position: int, e: Any, booking: Booking) -> None:
        count = self.payments.get(e.originator_id, 0)
        if count != 1:
            self.report(
                position,
                e.originator_id,
                CONFIRMED_PAYMENTS,
                f"confirmed with {count} successful payments",
            )

    def _refunded(self, position: int, e: Any, booking: Booking) -> None:
        due = booking.paid_cents - booking.refunded_cents
        if booking.status not in (CANCELLED, EXPIRED) or due <= 0:
            self.report(
                position,
                e.originator_id,
                REFUND_NOT_DUE,
                f"refund {e.refund_id} of {e.amount_cents} cents on a booking that is "
                f"{booking.status} with {due} cents paid and not refunded",
            )
        elif e.amount_cents > due:
            self.report(
                position,
                e.originator_id,
                REFUND_NOT_DUE,
                f"refund {e.refund_id} of {e.amount_cents} cents exceeds the {due} cents paid",
            )
        self._add_revenue(booking.show_id, 0, e.amount_cents)

    def _add_revenue(self, show_id: UUID, paid: int, refunded: int) -> None:
        totals = self.revenue.get(show_id)
        if totals is None:
            totals = self.revenue[show_id] = [0, 0]
        totals[0] += paid
        totals[1] += refunded


CHECKS: dict[type, Check] = {
    SeatInventory.SeatsHeld: Invariants._seats_held,  # type: ignore[attr-defined]
    Booking.PaymentSucceeded: Invariants._paid,  # type: ignore[attr-defined]
    Booking.LatePaymentReceived: Invariants._paid,  # type: ignore[attr-defined]
    Booking.Confirmed: Invariants._confirmed,  # type: ignore[attr-defined]
    Booking.Refunded: Invariants._refunded,  # type: ignore[attr-defined]
}
