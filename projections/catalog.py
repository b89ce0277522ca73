"""The show catalog: searchable (full text on title, description and category), filtered by
category and date, sorted by start time. View: `read.shows`. An organiser's edits update a
show's row (current details, start, sale window, prices and the venue's time zone); a deleted
show leaves the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from domain.show import CANCELLED, ON_SALE, SALE_CLOSED, SCHEDULED, Show
from infra.log_follower import LoggedEvent
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
        ("organizer_id", "uuid"),  # NULL: a show only admins manage
        ("sale_opens_at", "timestamptz"),  # NULL: the sale is opened by hand
        ("sale_closes_at", "timestamptz"),  # NULL: at the start (shows from before windows)
        ("time_zone", "text NOT NULL"),  # the venue's IANA zone ("UTC" for older shows)
        ("transfers_allowed", "boolean NOT NULL"),  # may its tickets change hands
        ("presale_opens_at", "timestamptz"),  # NULL: no presale (codes only, before the sale)
        ("queue_admits_per_minute", "integer"),  # NULL: no waiting room
    ),
    key=("show_id",),
    extra=(
        "search tsvector GENERATED ALWAYS AS ("
        "setweight(to_tsvector('english'::regconfig, title), 'A') || "
        "setweight(to_tsvector('english'::regconfig, description), 'B') || "
        # q=jazz finds the jazz shows, whatever their titles say
        "setweight(to_tsvector('english'::regconfig, category), 'A')) STORED",
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
                "organizer_id": e.organizer_id,
                "sale_opens_at": e.sale_opens_at,
                "sale_closes_at": e.sale_closes_at,
                "time_zone": e.time_zone,
                "transfers_allowed": True,  # until TransfersAllowedChanged says otherwise
                "presale_opens_at": e.presale_opens_at,
                "queue_admits_per_minute": None,  # until WaitingRoomChanged says otherwise
            }
        )

    def prepare(
        self, conn: psycopg.Connection[Any], changes: Page, page: Sequence[LoggedEvent]
    ) -> None:
        """A repricing changes one tier of the row's prices: load the rows it needs."""
        repriced = [logged.event.originator_id for logged in page if logged.type_name == REPRICED]
        if repriced:
            changes[SHOWS].load(conn, self.schema, repriced)

    def _changed(self, page: Page, e: Any, **values: Any) -> None:
        page[SHOWS].set(
            e.originator_id, updated_at=e.timestamp, version=e.originator_version, **values
        )

    def _details_changed(self, page: Page, e: Any) -> None:
        self._changed(
            page, e, title=e.title, description=e.description, category=e.category, venue=e.venue
        )

    def _rescheduled(self, page: Page, e: Any) -> None:
        self._changed(page, e, starts_at=e.starts_at, sale_closes_at=e.sale_closes_at)

    def _time_zone_changed(self, page: Page, e: Any) -> None:
        self._changed(page, e, time_zone=e.time_zone)

    def _transfers_allowed_changed(self, page: Page, e: Any) -> None:
        self._changed(page, e, transfers_allowed=e.transfers_allowed)

    def _sale_window_changed(self, page: Page, e: Any) -> None:
        self._changed(page, e, sale_opens_at=e.sale_opens_at, sale_closes_at=e.sale_closes_at)

    def _presale_window_changed(self, page: Page, e: Any) -> None:
        self._changed(page, e, presale_opens_at=e.presale_opens_at)

    def _waiting_room_changed(self, page: Page, e: Any) -> None:
        self._changed(page, e, queue_admits_per_minute=e.queue_admits_per_minute)

    def _tier_repriced(self, page: Page, e: Any) -> None:
        row = page[SHOWS].get(e.originator_id)
        if row is None:  # not in the catalog (deleted): nothing to reprice
            return
        self._changed(page, e, price_tiers={**row["price_tiers"], e.tier: e.price_cents})

    def _deleted(self, page: Page, e: Any) -> None:
        page[SHOWS].delete(e.originator_id)

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
        event_type(Show, "DetailsChanged"): _details_changed,
        event_type(Show, "Rescheduled"): _rescheduled,
        event_type(Show, "SaleWindowChanged"): _sale_window_changed,
        event_type(Show, "PresaleWindowChanged"): _presale_window_changed,
        event_type(Show, "TierRepriced"): _tier_repriced,
        event_type(Show, "TimeZoneChanged"): _time_zone_changed,
        event_type(Show, "TransfersAllowedChanged"): _transfers_allowed_changed,
        event_type(Show, "WaitingRoomChanged"): _waiting_room_changed,
        event_type(Show, "Deleted"): _deleted,
    }


REPRICED = event_type(Show, "TierRepriced").__qualname__
