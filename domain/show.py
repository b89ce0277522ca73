"""Show: what is on sale, and whether it is on sale.

A show is scheduled to start in the future, with a cap on the tickets one customer may hold and
buy (`max_tickets_per_customer`); its SeatInventory, which decides holds, carries both. Its sale
window (`sale_opens_at`, `sale_closes_at`, opens < closes <= start) is when
process_managers/sale_windows.py opens and closes the sale by itself; no `sale_opens_at` means
the sale is opened by hand."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidShowError, ShowStatusError
from domain.inventory import DEFAULT_TICKETS_PER_CUSTOMER
from domain.seatmap import validate_seat_map

MAX_ADVANCE = timedelta(days=3653)  # ten years
SCHEDULED = "scheduled"
ON_SALE = "on_sale"
SALE_CLOSED = "sale_closed"
CANCELLED = "cancelled"


class Show(Aggregate):
    class Scheduled(Aggregate.Created):
        """Version 2 also records the cap per customer; version 1 events (stored before it
        existed) are upcast to the default cap, which those shows' inventories apply.
        Version 3 also records the organiser who runs the show (`organizer_id`); older events
        are upcast to None: a show only admins manage."""

        class_version = 3

        show_id: UUID
        title: str
        description: str
        category: str
        venue: str
        starts_at: datetime
        currency: str
        price_tiers: dict[str, int]
        sections: list[dict[str, Any]]
        max_tickets_per_customer: int
        # Events stored before sale windows lack these: they load as None (no window).
        sale_opens_at: datetime | None
        sale_closes_at: datetime | None

        organizer_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["max_tickets_per_customer"] = DEFAULT_TICKETS_PER_CUSTOMER

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["organizer_id"] = None

    # Version 2 snapshots carry `max_tickets_per_customer` (upcast_v1_v2), version 3 ones
    # `organizer_id` (upcast_v2_v3).
    class_version = 3

    @event(Scheduled)
    def __init__(
        self,
        show_id: UUID,
        title: str,
        description: str,
        category: str,
        venue: str,
        starts_at: datetime,
        currency: str,
        price_tiers: dict[str, int],
        sections: list[dict[str, Any]],
        max_tickets_per_customer: int = DEFAULT_TICKETS_PER_CUSTOMER,
        sale_opens_at: datetime | None = None,
        sale_closes_at: datetime | None = None,
        organizer_id: UUID | None = None,
    ) -> None:
        self.organizer_id = organizer_id
        self.title = title
        self.description = description
        self.category = category
        self.venue = venue
        self.starts_at = starts_at
        self.currency = currency
        self.price_tiers = price_tiers
        self.sections = sections
        self.max_tickets_per_customer = max_tickets_per_customer
        self.sale_opens_at = sale_opens_at
        self.sale_closes_at = sale_closes_at
        self.status = SCHEDULED

    @staticmethod
    def create_id(show_id: UUID, **_: Any) -> UUID:
        return show_id

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before version 2 has the default cap per customer."""
        state["max_tickets_per_customer"] = DEFAULT_TICKETS_PER_CUSTOMER

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot taken before version 3 is of a show only admins manage."""
        state["organizer_id"] = None

    @classmethod
    def schedule(
        cls,
        show_id: UUID,
        title: str,
        description: str,
        category: str,
        venue: str,
        starts_at: datetime,
        currency: str,
        price_tiers: dict[str, int],
        sections: list[dict[str, Any]],
        max_tickets_per_customer: int = DEFAULT_TICKETS_PER_CUSTOMER,
        now: datetime | None = None,
        sale_opens_at: datetime | None = None,
        sale_closes_at: datetime | None = None,
        organizer_id: UUID | None = None,
    ) -> Show:
        """Schedule a new show; `now` is the deciding clock's time, which the show must start
        after (a show in the past would sell tickets nobody can use). The sale closes by
        itself at `sale_closes_at`, by default the show's start. `organizer_id` is who runs
        the show (None: admins only)."""
        if not title.strip():
            raise InvalidShowError("a show needs a title")
        if starts_at.tzinfo is None:
            raise InvalidShowError("starts_at must carry a time zone")
        if now is not None and starts_at <= now:
            raise InvalidShowError(
                f"a show must start in the future: {starts_at.isoformat()} is not after "
                f"{now.isoformat()}"
            )
        if now is not None and starts_at - now > MAX_ADVANCE:
            # Nobody sells a show a decade ahead; a far date is a typo or an attack (a time
            # beyond the year 9999 in UTC cannot even be read back).
            raise InvalidShowError(
                f"a show must start within {MAX_ADVANCE.days} days: {starts_at.isoformat()} "
                "is too far ahead"
            )
        if max_tickets_per_customer < 1:
            raise InvalidShowError("max_tickets_per_customer must be at least 1")
        sale_closes_at = starts_at if sale_closes_at is None else sale_closes_at
        _validate_sale_window(sale_opens_at, sale_closes_at, starts_at)
        validate_seat_map(price_tiers, sections)
        return cls(
            show_id=show_id,
            title=title,
            description=description,
            category=category,
            venue=venue,
            starts_at=starts_at,
            currency=currency.upper(),
            price_tiers=price_tiers,
            sections=sections,
            max_tickets_per_customer=max_tickets_per_customer,
            sale_opens_at=sale_opens_at,
            sale_closes_at=sale_closes_at,
            organizer_id=organizer_id,
        )

    def is_managed_by(self, account_id: UUID, is_admin: bool) -> bool:
        """Admins manage every show, an organiser only the shows they scheduled."""
        return is_admin or (self.organizer_id is not None and self.organizer_id == account_id)

    def open_sale(self) -> None:
        if self.status not in (SCHEDULED, SALE_CLOSED):
            raise ShowStatusError(f"show {self.id} is {self.status}: cannot open its sale")
        self._sale_opened()

    @event("SaleOpened")
    def _sale_opened(self) -> None:
        self.status = ON_SALE

    def close_sale(self) -> None:
        if self.status != ON_SALE:
            raise ShowStatusError(f"show {self.id} is {self.status}: cannot close its sale")
        self._sale_closed()

    @event("SaleClosed")
    def _sale_closed(self) -> None:
        self.status = SALE_CLOSED

    def cancel(self, reason: str) -> None:
        if self.status == CANCELLED:
            raise ShowStatusError(f"show {self.id} is already cancelled")
        self._cancelled(reason=reason)

    @event("Cancelled")
    def _cancelled(self, reason: str) -> None:
        self.status = CANCELLED
        self.cancellation_reason = reason


def _validate_sale_window(
    opens_at: datetime | None, closes_at: datetime, starts_at: datetime
) -> None:
    """A sale window opens before it closes, and closes at the show's start at the latest."""
    for name, time in (("sale_opens_at", opens_at), ("sale_closes_at", closes_at)):
        if time is not None and time.tzinfo is None:
            raise InvalidShowError(f"{name} must carry a time zone")
    if closes_at > starts_at:
        raise InvalidShowError(
            f"the sale must close by the show's start: sale_closes_at {closes_at.isoformat()} "
            f"is after starts_at {starts_at.isoformat()}"
        )
    if opens_at is not None and opens_at >= closes_at:
        raise InvalidShowError(
            f"the sale must open before it closes: sale_opens_at {opens_at.isoformat()} is not "
            f"before sale_closes_at {closes_at.isoformat()}"
        )
