"""The show catalog: searchable (full text on title and description), filtered by category and
date, sorted by start time. View: `read.shows`."""

from __future__ import annotations

from typing import Any

from domain.show import CANCELLED, ON_SALE, SALE_CLOSED, SCHEDULED, Show
from projections.base import Page, Projection, event_type
from projections.tables import Table

SHOWS = Table(
    "shows",
    columns=(
        ("show_id", "uuid NOT NULL"),
        ("title", "text NOT NULL"),
        ("description", "text NOT NULL"),
        ("category", "text NOT NULL"),
        ("venue", "text NOT NULL"),
        ("starts_at", "timestamptz NOT NULL"),
        ("currency", "text NOT NULL"),
        ("price_tiers", "jsonb NOT NULL"),
        ("sections", "jsonb NOT NULL"),
        ("status", "text NOT NULL"),
        ("cancellation_reason", "text"),
        ("scheduled_at", "timestamptz NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
        ("version", "integer NOT NULL"),
    ),
    key=("show_id",),
    extra=(
        "search tsvector GENERATED ALWAYS AS ("
        "setweight(to_tsvector('english'::regconfig, title), 'A') || "
        "setweight(to_tsvector('english'::regconfig, description), 'B')) STORED",
    ),
    indexes=(
        "(starts_at, show_id)",
        "(lower(category), starts_at, show_id)",
        "USING gin (search)",
    ),
)


class Catalog(Projection):
    kind = "catalog"
    tables = (SHOWS,)
    views = {"shows": "shows"}

    def _scheduled(self, page: Page, e: Any) -> None:
        page[SHOWS].insert(
            {
                "show_id": e.originator_id,
                "title": e.title,
                "description": e.description,
                "category": e.category,
                "venue": e.venue,
                "starts_at": e.starts_at,
                "currency": e.currency,
                "price_tiers": e.price_tiers,
                "sections": e.sections,
                "status": SCHEDULED,
                "cancellation_reason": None,
                "scheduled_at": e.timestamp,
                "updated_at": e.timestamp,
                "version": e.originator_version,
            }
        )

    def _status(self, page: Page, e: Any, status: str, **more: Any) -> None:
        page[SHOWS].set(
            e.originator_id,
            status=status,
            updated_at=e.timestamp,
            version=e.originator_version,
            **more,
        )

    def _sale_opened(self, page: Page, e: Any) -> None:
        self._status(page, e, ON_SALE)

    def _sale_closed(self, page: Page, e: Any) -> None:
        self._status(page, e, SALE_CLOSED)

    def _cancelled(self, page: Page, e: Any) -> None:
        self._status(page, e, CANCELLED, cancellation_reason=e.reason)

    handlers = {
        event_type(Show, "Scheduled"): _scheduled,
        event_type(Show, "SaleOpened"): _sale_opened,
        event_type(Show, "SaleClosed"): _sale_closed,
        event_type(Show, "Cancelled"): _cancelled,
    }
