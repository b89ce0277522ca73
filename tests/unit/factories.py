"""Small data factories for the pure domain: every call returns fresh objects with fresh ids."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, CanMutateAggregate

from domain.booking import Booking
from domain.inventory import LapsedHoldLimit, SeatInventory
from domain.show import Show

T0 = datetime(2031, 5, 1, 18, 0, tzinfo=UTC)
HOLD_UNTIL = T0 + timedelta(minutes=10)
STD_CENTS = 5_000
FLOOR_CENTS = 3_000


def price_tiers() -> dict[str, int]:
    return {"STD": STD_CENTS, "FLOOR": FLOOR_CENTS}


def seated(code: str, rows: dict[str, int], tier: str = "STD") -> dict[str, Any]:
    """A seated section; ``rows`` maps row label -> number of seats, front row first."""
    return {
        "code": code,
        "kind": "seated",
        "tier": tier,
        "rows": [{"label": label, "seats": seats} for label, seats in rows.items()],
    }


def general(code: str = "GA", capacity: int = 20, tier: str = "FLOOR") -> dict[str, Any]:
    return {"code": code, "kind": "general", "tier": tier, "capacity": capacity}


def a_seat_map() -> list[dict[str, Any]]:
    """Section A: three rows of ten seats; GA: twenty standing tickets."""
    return [seated("A", {"1": 10, "2": 10, "3": 10}), general("GA", 20)]


def show_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "show_id": uuid4(),
        "title": "Night Owls Live",
        "description": "An evening of loud music.",
        "category": "concert",
        "venue": "Harbour Hall",
        "starts_at": T0 + timedelta(days=30),
        "currency": "eur",
        "price_tiers": price_tiers(),
        "sections": a_seat_map(),
    }
    args.update(overrides)
    return args


def a_show(**overrides: Any) -> Show:
    return Show.schedule(**show_args(**overrides))


def an_inventory(
    sections: list[dict[str, Any]] | None = None,
    *,
    on_sale: bool = True,
) -> SeatInventory:
    inventory = SeatInventory(
        inventory_id=uuid4(),
        show_id=uuid4(),
        currency="EUR",
        price_tiers=price_tiers(),
        sections=a_seat_map() if sections is None else sections,
    )
    if on_sale:
        inventory.open_sale()
    return inventory


def place_hold(
    inventory: SeatInventory,
    seats: Sequence[str] = (),
    ga: dict[str, int] | None = None,
    *,
    customer_id: UUID | None = None,
    until: datetime = HOLD_UNTIL,
    customer_limit: int | None = None,
    lapsed_limit: LapsedHoldLimit | None = None,
    now: datetime = T0,
) -> UUID:
    """Hold for a new booking and return the booking's id."""
    booking_id = uuid4()
    inventory.hold(
        booking_id,
        customer_id or uuid4(),
        list(seats),
        dict(ga or {}),
        until=until,
        customer_limit=customer_limit,
        lapsed_limit=lapsed_limit,
        now=now,
    )
    return booking_id


def a_booking(amount_cents: int = 2 * STD_CENTS) -> Booking:
    return Booking(
        booking_id=uuid4(),
        show_id=uuid4(),
        customer_id=uuid4(),
        seats=["A-1-5", "A-1-6"],
        general={},
        amount_cents=amount_cents,
        currency="EUR",
        hold_expires_at=HOLD_UNTIL,
        payment_method="card",
    )


def replay(events: Sequence[Any]) -> Any:
    """Rebuild an aggregate from its events, as a repository would (created event first)."""
    aggregate: Aggregate | None = None
    for domain_event in events:
        assert isinstance(domain_event, CanMutateAggregate)
        aggregate = domain_event.mutate(aggregate)
    return aggregate


def state_of(aggregate: Aggregate) -> dict[str, Any]:
    """Everything an aggregate knows, minus events not yet collected."""
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def new_events(aggregate: Aggregate) -> list[Any]:
    """Events recorded since the last call (loosely typed: their classes are generated)."""
    return list(aggregate.collect_events())


def event_names(events: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in events]
