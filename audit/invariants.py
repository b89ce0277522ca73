"""The rules every point of the log must satisfy, checked incrementally while it is replayed.

Every aggregate is rebuilt in memory by applying its events in log order (`event.mutate`);
before an event is applied, the rules it could break are checked against the state it meets:

- a seat is never held or sold by two bookings at once; a GA section never exceeds its capacity;
- a blocked seat is never held or sold (nor a held or sold seat blocked); a GA section's
  capacity never goes below its tickets held and sold;
- a confirmed booking has exactly one successful payment (when confirmed, and ever after), and
  it is the booking's own: its recorded intent, exactly its amount, in its currency;
- nothing is confirmed once its show is cancelled or has started;
- no customer holds or owns more tickets of a show than the show's per-customer cap;
- a refund belongs to a cancelled (or expired) booking that was paid, and at most what was paid;
- the revenue per show (payments and refunds) equals the sales read model at its position;
- tickets only for confirmed bookings, each admitted at most once, never while void
  (audit/ticket_invariants.py);
- each stream is a gapless sequence of versions whose events apply to the state they meet.

Some money can only be judged at the end of the log (`finish`): every paid booking of a
cancelled show refunded, every captured payment that did not match refunded. A refund still
missing within a grace after it fell due may be in flight (the saga is at work): it is
`pending`, not a violation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate, OriginatorVersionError

from audit.appliers import _appliers, applier
from audit.ticket_invariants import TICKET_CHECKS
from commands.payments import FREE_INTENT
from domain.booking import CANCELLED, CONFIRMED, EXPIRED, Booking
from domain.inventory import SeatInventory
from domain.show import CANCELLED as SHOW_CANCELLED
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
CONFIRMED_UNMATCHED = "confirmed-without-its-exact-payment"
CONFIRMED_AFTER_CANCEL = "confirmed-after-show-cancelled"
CONFIRMED_AFTER_START = "confirmed-after-show-started"
OVER_CUSTOMER_CAP = "customer-over-ticket-cap"
CANCELLED_SHOW_NOT_REFUNDED = "cancelled-show-booking-not-refunded"
MISMATCH_NOT_REFUNDED = "mismatched-payment-not-refunded"
BLOCKED_SEAT_TAKEN = "blocked-seat-held-or-sold"
GA_BELOW_TAKEN = "ga-capacity-below-taken"

DEFAULT_TICKET_CAP = 10  # per customer and show, for shows that do not say (older logs)
DEFAULT_REFUND_GRACE = timedelta(minutes=15)


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


def add_check(checks: dict[type, Check], kind: type, check: Check) -> None:
    """Run `check` too for events of `kind`, after the rules that run already (a feature's
    rules added to CHECKS); adding the same check again adds nothing."""
    existing = checks.get(kind)
    if existing is None:
        checks[kind] = check
    elif check not in _parts(existing):
        checks[kind] = _chain((*_parts(existing), check))


def _parts(check: Check) -> tuple[Check, ...]:
    parts: tuple[Check, ...] = getattr(check, "parts", (check,))
    return parts


def _chain(parts: tuple[Check, ...]) -> Check:
    def run(audit: Invariants, position: int, e: Any, aggregate: Any) -> None:
        for part in parts:
            part(audit, position, e, aggregate)

    run.parts = parts  # type: ignore[attr-defined]
    return run


class Invariants:
    """Feed it every event in log order (`apply`); it keeps the aggregates and the findings."""

    def __init__(self, max_kept: int = 1000) -> None:
        self.aggregates: dict[UUID, Aggregate] = {}
        self.payments: dict[UUID, int] = {}  # booking -> successful payments received
        self.revenue: dict[UUID, list[int]] = {}  # show -> [paid cents, refunded cents]
        self.violations: list[Violation] = []
        self.violation_count = 0
        self.pending: list[Violation] = []  # refunds due but maybe in flight (see finish)
        self.pending_count = 0
        self.mismatches = 0  # payments the system recorded as not matching (not violations)
        self.events = 0
        self.position = 0  # of the last event applied
        self._max_kept = max_kept
        self._unmatched: dict[UUID, str] = {}  # booking -> why its payment is not its own
        # Tickets per (inventory, customer), held or sold, and each live claim's share of it.
        self._tickets: dict[tuple[UUID, UUID], int] = {}
        self._claims: dict[UUID, tuple[tuple[UUID, UUID], int]] = {}
        self._cancelled_at: dict[UUID, datetime] = {}  # show -> when it was cancelled
        self._paid_after_cancel: dict[UUID, datetime] = {}  # booking -> when (last)
        # Captured payments recorded as mismatches, by (booking, intent): (position, when, cents).
        self._mismatch_refunds: dict[tuple[UUID, Any], tuple[int, datetime, int]] = {}

    def report(self, position: int, stream_id: UUID | None, rule: str, message: str) -> None:
        self.violation_count += 1
        if len(self.violations) < self._max_kept:
            self.violations.append(Violation(position, stream_id, rule, message))

    def apply(self, position: int, event: Any) -> None:
        self.events += 1
        self.position = position
        stream = event.originator_id
        aggregate = self.aggregates.get(stream)
        if aggregate is not None:
            check = CHECKS.get(type(event))
            if check is not None:
                check(self, position, event, aggregate)
        try:
            apply = _appliers.get(type(event))
            if apply is None:
                apply = applier(type(event))
            self.aggregates[stream] = apply(event, aggregate)  # as event.mutate(aggregate)
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

    def finish(self, now: datetime, grace: timedelta = DEFAULT_REFUND_GRACE) -> None:
        """At the end of the log: the refunds that are due. One due for longer than `grace`
        before `now` is a violation; a younger one may still be in flight: pending."""
        at = self.position
        if self._cancelled_at:
            for stream, aggregate in self.aggregates.items():
                if not isinstance(aggregate, Booking):
                    continue
                cancelled = self._cancelled_at.get(aggregate.show_id)
                due = aggregate.paid_cents - aggregate.refunded_cents
                if cancelled is None or due <= 0:
                    continue
                since = max(cancelled, self._paid_after_cancel.get(stream, cancelled))
                self._due(
                    now - since > grace,
                    at,
                    stream,
                    CANCELLED_SHOW_NOT_REFUNDED,
                    f"booking of cancelled show {aggregate.show_id} is {aggregate.status} with "
                    f"{due} cents paid and not refunded (due since {since.isoformat()})",
                )
        for (booking, intent), (found, since, cents) in self._mismatch_refunds.items():
            self._due(
                now - since > grace,
                at,
                booking,
                MISMATCH_NOT_REFUNDED,
                f"payment {intent} of {cents} cents, recorded as a mismatch at position "
                f"{found}, was captured and not refunded (due since {since.isoformat()})",
            )

    def _due(self, late: bool, position: int, stream: UUID, rule: str, message: str) -> None:
        if late:
            self.report(position, stream, rule, message)
            return
        self.pending_count += 1
        if len(self.pending) < self._max_kept:
            self.pending.append(Violation(position, stream, rule, message))

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
        self._count_tickets(position, e, inventory)
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
                claim = inventory.claims.get(other)
                sold = claim is not None and claim.sold
                self.report(
                    position,
                    e.originator_id,
                    SEAT_TAKEN,
                    f"seat {seat} held for booking {e.booking_id} while "
                    f"{'sold to' if sold else 'held by'} booking {UUID(other)}",
                )
            elif seat not in inventory.seat_tier:
                self.report(position, e.originator_id, UNKNOWN_SEAT, f"no seat {seat} in the map")
            if seat in inventory.blocked:
                self.report(
                    position,
                    e.originator_id,
                    BLOCKED_SEAT_TAKEN,
                    f"seat {seat} held for booking {e.booking_id} while blocked "
                    f"({inventory.blocked[seat]})",
                )
        for code, n in e.general.items():
            ga = inventory.general.get(code)
            if ga is None:
                self.report(position, e.originator_id, UNKNOWN_SEAT, f"no GA section {code}")
            elif ga.taken + n > ga.capacity:
                self.report(
                    position,
                    e.originator_id,
                    GA_OVER_CAPACITY,
                    f"GA section {code}: {ga.taken} taken + {n} for booking {e.booking_id} "
                    f"> capacity {ga.capacity}",
                )

    def _count_tickets(self, position: int, e: Any, inventory: SeatInventory) -> None:
        """The customer's tickets of this show, held or bought, against the show's cap."""
        quantity = len(e.seats) + sum(e.general.values())
        key = (e.originator_id, e.customer_id)
        before = self._claims.get(e.booking_id)  # a booking claiming twice replaces its claim
        total = self._tickets.get(key, 0) - (0 if before is None else before[1]) + quantity
        self._tickets[key] = total
        self._claims[e.booking_id] = (key, quantity)
        cap = self._ticket_cap(inventory)
        if total > cap:
            self.report(
                position,
                e.originator_id,
                OVER_CUSTOMER_CAP,
                f"customer {e.customer_id} holds or owns {total} tickets of show "
                f"{inventory.show_id} with booking {e.booking_id} ({quantity} more), over the "
                f"cap of {cap}",
            )

    def _ticket_cap(self, inventory: SeatInventory) -> int:
        """The show's own cap (Show.Scheduled's `max_tickets_per_customer`, which its inventory
        keeps as `customer_limit`), else the default (logs from before shows had one)."""
        show = self.aggregates.get(inventory.show_id)
        for cap in (
            getattr(show, "max_tickets_per_customer", None),
            getattr(inventory, "customer_limit", None),
        ):
            if isinstance(cap, int) and cap > 0:
                return cap
        return DEFAULT_TICKET_CAP

    def _seats_blocked(self, position: int, e: Any, inventory: SeatInventory) -> None:
        for seat in e.seats:
            other = inventory.holder.get(seat)
            if other is not None:
                claim = inventory.claims.get(other)
                sold = claim is not None and claim.sold
                self.report(
                    position,
                    e.originator_id,
                    BLOCKED_SEAT_TAKEN,
                    f"seat {seat} blocked while {'sold to' if sold else 'held by'} booking "
                    f"{UUID(other)}",
                )

    def _capacity_changed(self, position: int, e: Any, inventory: SeatInventory) -> None:
        ga = inventory.general.get(e.section)
        if ga is None:
            self.report(position, e.originator_id, UNKNOWN_SEAT, f"no GA section {e.section}")
        elif e.capacity < ga.taken:
            self.report(
                position,
                e.originator_id,
                GA_BELOW_TAKEN,
                f"GA section {e.section}: capacity set to {e.capacity} with {ga.taken} tickets "
                "held or sold",
            )

    def _seats_released(self, position: int, e: Any, inventory: SeatInventory) -> None:
        claim = self._claims.pop(e.booking_id, None)
        if claim is not None:
            key, quantity = claim
            self._tickets[key] -= quantity

    def _show_cancelled(self, position: int, e: Any, show: Show) -> None:
        self._cancelled_at.setdefault(e.originator_id, e.timestamp)

    def _paid(self, position: int, e: Any, booking: Booking) -> None:
        if isinstance(e, Booking.PaymentSucceeded):  # type: ignore[attr-defined]
            self._match(e, booking)
        if booking.show_id in self._cancelled_at:
            self._paid_after_cancel[e.originator_id] = e.timestamp
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

    def _match(self, e: Any, booking: Booking) -> None:
        """Whether a successful payment is the booking's own: the intent recorded for it (by
        PaymentRequested; "free" and 0 cents for a free booking), exactly its amount, in its
        currency (when the event says which). Judged when the booking is confirmed."""
        recorded = booking.payment_intent_id
        intent, cents = e.payment_intent_id, e.amount_cents
        currency = getattr(e, "currency", None)
        why = []
        if recorded is None and intent != FREE_INTENT:
            why.append(f"intent {intent} where none was recorded for the booking")
        elif recorded is not None and intent != recorded:
            why.append(f"intent {intent} where {recorded} was recorded")
        if cents != booking.amount_cents:
            why.append(f"{cents} cents of {booking.amount_cents}")
        if isinstance(currency, str) and currency.upper() != booking.currency.upper():
            why.append(f"currency {currency} instead of {booking.currency}")
        if why:
            self._unmatched[e.originator_id] = ", ".join(why)
        else:
            self._unmatched.pop(e.originator_id, None)

    def _confirmed(self, position: int, e: Any, booking: Booking) -> None:
        stream = e.originator_id
        count = self.payments.get(stream, 0)
        if count != 1:
            self.report(
                position, stream, CONFIRMED_PAYMENTS, f"confirmed with {count} successful payments"
            )
        unmatched = self._unmatched.pop(stream, None)
        if unmatched is not None:
            self.report(
                position,
                stream,
                CONFIRMED_UNMATCHED,
                f"confirmed on a payment that is not its own: {unmatched}",
            )
        show = self.aggregates.get(booking.show_id)
        if not isinstance(show, Show):
            return
        if show.status == SHOW_CANCELLED:
            self.report(
                position,
                stream,
                CONFIRMED_AFTER_CANCEL,
                f"confirmed after show {show.id} was cancelled",
            )
        if e.timestamp >= show.starts_at:
            self.report(
                position,
                stream,
                CONFIRMED_AFTER_START,
                f"confirmed at {e.timestamp.isoformat()}, after show {show.id} started at "
                f"{show.starts_at.isoformat()}",
            )

    def _mismatched(self, position: int, e: Any, booking: Booking) -> None:
        """Booking.PaymentMismatched: the system refused a payment (not a violation). Money it
        captured (`amount_cents`: the cents captured, as the booking keeps them, unless the
        event says otherwise with `captured`) must be given back: tracked until a refund of the
        booking naming the intent (Booking.MismatchedPaymentRefunded), judged in `finish`."""
        self.mismatches += 1
        intent = getattr(e, "payment_intent_id", None)
        cents = getattr(e, "amount_cents", 0)
        captured = getattr(e, "captured", True)
        if isinstance(intent, str) and isinstance(cents, int) and cents > 0 and captured:
            self._mismatch_refunds[(e.originator_id, intent)] = (position, e.timestamp, cents)

    def _mismatch_refunded(self, position: int, e: Any, booking: Booking) -> None:
        self._mismatch_refunds.pop((e.originator_id, getattr(e, "payment_intent_id", None)), None)

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
    SeatInventory.SeatsHeld: Invariants._seats_held,
    SeatInventory.SeatsReleased: Invariants._seats_released,
    SeatInventory.SeatsBlocked: Invariants._seats_blocked,  # type: ignore[attr-defined]
    SeatInventory.GeneralCapacityChanged: Invariants._capacity_changed,  # type: ignore[attr-defined]
    Show.Cancelled: Invariants._show_cancelled,  # type: ignore[attr-defined]
    Booking.PaymentSucceeded: Invariants._paid,  # type: ignore[attr-defined]
    Booking.LatePaymentReceived: Invariants._paid,  # type: ignore[attr-defined]
    Booking.Confirmed: Invariants._confirmed,  # type: ignore[attr-defined]
    Booking.Refunded: Invariants._refunded,  # type: ignore[attr-defined]
}


def _optional_checks() -> None:
    """Booking events this audit knows but does not need: a payment recorded as a mismatch and
    the refund of one. Found by name, so that a domain without them is still audited."""
    for name, check in (
        ("PaymentMismatched", Invariants._mismatched),
        ("MismatchedPaymentRefunded", Invariants._mismatch_refunded),
    ):
        kind = getattr(Booking, name, None)
        if isinstance(kind, type):
            CHECKS[kind] = check


_optional_checks()

# The rules of tickets live in their own module (audit/ticket_invariants.py).
CHECKS.update(TICKET_CHECKS)
