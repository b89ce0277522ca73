"""Show: what is on sale, and whether it is on sale."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidShowError, ShowStatusError
from domain.seatmap import validate_seat_map

SCHEDULED = "scheduled"
ON_SALE = "on_sale"
SALE_CLOSED = "sale_closed"
CANCELLED = "cancelled"


class Show(Aggregate):
    @event("Scheduled")
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
    ) -> None:
        self.title = title
        self.description = description
        self.category = category
        self.venue = venue
        self.starts_at = starts_at
        self.currency = currency
        self.price_tiers = price_tiers
        self.sections = sections
        self.status = SCHEDULED

    @staticmethod
    def create_id(show_id: UUID, **_: Any) -> UUID:
        return show_id

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
    ) -> Show:
        if not title.strip():
            raise InvalidShowError("a show needs a title")
        if starts_at.tzinfo is None:
            raise InvalidShowError("starts_at must carry a time zone")
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
        )

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
