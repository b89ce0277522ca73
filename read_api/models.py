"""What the query API answers (schema families, as the command API's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

POSITION = Field(description="the log position the read models had reached for this answer")


class ShowSummary(BaseModel):
    show_id: UUID
    title: str
    category: str
    venue: str
    starts_at: datetime
    status: str
    currency: str
    price_from_cents: int


class ShowPage(BaseModel):
    items: list[ShowSummary]
    next_cursor: str | None
    position: int = POSITION


class SectionAvailability(BaseModel):
    code: str
    kind: str
    tier: str
    price_cents: int
    capacity: int
    held: int
    sold: int
    available: int

    @classmethod
    def of(cls, row: dict[str, Any]) -> SectionAvailability:
        return cls(
            code=row["section"],
            kind=row["kind"],
            tier=row["tier"],
            price_cents=row["price_cents"],
            capacity=row["capacity"],
            held=row["held"],
            sold=row["sold"],
            available=row["available"],
        )


class ShowDetails(BaseModel):
    show_id: UUID
    title: str
    description: str
    category: str
    venue: str
    starts_at: datetime
    status: str
    cancellation_reason: str | None
    currency: str
    price_tiers: dict[str, int] = Field(description="the current price of each tier, in cents")
    organizer_id: UUID | None = Field(
        default=None, description="who runs the show (null: a show only admins manage)"
    )
    sale_opens_at: datetime | None = Field(
        default=None, description="when the sale opens by itself (null: opened by hand)"
    )
    sale_closes_at: datetime | None = Field(
        default=None, description="when the sale closes by itself (null: at the start)"
    )
    presale_opens_at: datetime | None = Field(
        default=None,
        description="when the presale opens (only holds with a presale `code` until "
        "`sale_opens_at`; null: no presale)",
    )
    queue_admits_per_minute: int | None = Field(
        default=None,
        description="the waiting room's pace: fans let in a minute from `sale_opens_at` "
        "(POST /shows/{id}/queue; null: no waiting room)",
    )
    time_zone: str = Field(
        default="UTC",
        description="the venue's IANA time zone: tickets, e-mails and calendars show the "
        "show's times in it (the times here are instants, with their offset)",
    )
    transfers_allowed: bool = Field(
        default=True, description="whether ticket holders may give their tickets to others"
    )
    capacity: int
    available: int
    sections: list[SectionAvailability]
    position: int = POSITION


class SeatPublic(BaseModel):
    seat: str
    number: int
    status: str = Field(description="free, held, sold or blocked")


class SeatRow(BaseModel):
    label: str
    seats: list[SeatPublic]


class SeatMapSection(SectionAvailability):
    rows: list[SeatRow] = Field(description="empty for general admission")


class SeatMap(BaseModel):
    show_id: UUID
    sections: list[SeatMapSection]
    position: int = POSITION


class BookingPublic(BaseModel):
    booking_id: UUID
    show_id: UUID
    customer_id: UUID
    status: str
    seats: list[str]
    general: dict[str, int]
    quantity: int
    amount_cents: int
    currency: str
    hold_expires_at: datetime
    payment_method: str | None
    paid_cents: int
    refunded_cents: int
    reason: str | None
    placed_at: datetime
    updated_at: datetime
    offer: bool = Field(
        default=False,
        description="a waiting-list offer: held for the customer's waiting-list entry, to pay "
        "before `hold_expires_at` like any hold",
    )
    code: str | None = Field(default=None, description="the presale code it was booked with")

    @classmethod
    def of(cls, row: dict[str, Any]) -> BookingPublic:
        return cls.model_validate({k: row[k] for k in cls.model_fields})


class BookingAnswer(BookingPublic):
    position: int = POSITION


class BookingPage(BaseModel):
    items: list[BookingPublic]
    next_cursor: str | None
    position: int = POSITION


class ShowStats(BaseModel):
    show_id: UUID
    title: str
    currency: str
    tickets_held: int
    tickets_sold: int
    bookings_placed: int
    bookings_confirmed: int
    bookings_cancelled: int
    bookings_expired: int
    paid_cents: int
    refunded_cents: int
    revenue_cents: int = Field(description="paid minus refunded")
    position: int = POSITION


class ProjectionPublic(BaseModel):
    name: str
    generation: int
    position: int
    lag_events: int
    lag_seconds: float
    rebuilding_generation: int | None
    rebuilding_position: int | None
    stale: bool = Field(description="built by another version of the projection: rebuild it")
    failing: bool = Field(
        default=False, description="stopped on an event it cannot apply (it retries)"
    )
    failed_position: int | None = Field(default=None, description="that event's log position")
    error: str | None = Field(default=None, description="why it cannot apply that event")
    failures: int = Field(default=0, description="attempts on that event so far")
    skips: bool = Field(
        default=False,
        description="whether that event will be skipped (dead-lettered) after a few attempts",
    )
    dead_letters: int = Field(
        default=0, description="events this read model skipped because it could not apply them"
    )


class FollowerFailurePublic(BaseModel):
    """A log follower (read model, process manager, audit chain) stopped on an event."""

    name: str
    failed_position: int
    error: str
    failures: int
    skips: bool
    first_failed_at: datetime
    last_failed_at: datetime


class ProjectionsReport(BaseModel):
    head: int = Field(description="the event store's last position")
    projections: list[ProjectionPublic]
    failing_followers: list[FollowerFailurePublic] = Field(
        default_factory=list,
        description="every log follower stopped on an event, the read models' included",
    )
