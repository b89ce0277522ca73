"""Per show: every seat with its status, and per section its capacity, held and sold counts.
Views: `read.seats`, `read.show_sections`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg

from domain.seatmap import GENERAL, seat_id
from infra.log_follower import LoggedEvent
from projections.base import Page, Projection
from projections.claims import (
    CLAIMS,
    INVENTORIES,
    INVENTORY_CREATED,
    SEATS_HELD,
    SEATS_RELEASED,
    SEATS_SOLD,
    Claim,
    Claims,
)
from projections.tables import Table

FREE = "free"
HELD = "held"
SOLD = "sold"

SEATS = Table(
    "seats",
    columns=(
        ("show_id", "uuid NOT NULL"),
        ("seat", "text NOT NULL"),
        ("section", "text NOT NULL"),
        ("row_label", "text NOT NULL"),
        ("number", "integer NOT NULL"),
        ("ordinal", "integer NOT NULL"),
        ("status", "text NOT NULL"),
        ("booking_id", "uuid"),
    ),
    key=("show_id", "seat"),
    indexes=("(show_id, ordinal)",),
)
SECTIONS = Table(
    "sections",
    columns=(
        ("show_id", "uuid NOT NULL"),
        ("section", "text NOT NULL"),
        ("ordinal", "integer NOT NULL"),
        ("kind", "text NOT NULL"),
        ("tier", "text NOT NULL"),
        ("price_cents", "integer NOT NULL"),
        ("capacity", "integer NOT NULL"),
        ("held", "integer NOT NULL"),
        ("sold", "integer NOT NULL"),
    ),
    key=("show_id", "section"),
    extra=("available integer GENERATED ALWAYS AS (capacity - held - sold) STORED",),
)


class SeatMap(Projection):
    kind = "seat_map"
    tables = (SEATS, SECTIONS, INVENTORIES, CLAIMS)
    views = {"seats": "seats", "show_sections": "sections"}

    def __init__(self, generation: int) -> None:
        super().__init__(generation)
        self.claims = Claims(CLAIMS)

    def prepare(
        self, conn: psycopg.Connection[Any], changes: Page, page: Sequence[LoggedEvent]
    ) -> None:
        self.claims.prepare(conn, self.schema, changes, page)

    def _created(self, page: Page, e: Any) -> None:
        show_id = self.claims.created(page, e)
        seats = page[SEATS]
        ordinal = 0
        for position, section in enumerate(e.sections):
            code = section["code"]
            general = section["kind"] == GENERAL
            capacity = int(section["capacity"]) if general else 0
            for row in [] if general else section["rows"]:
                for number in range(1, int(row["seats"]) + 1):
                    seats.insert(
                        {
                            "show_id": show_id,
                            "seat": seat_id(code, row["label"], number),
                            "section": code,
                            "row_label": row["label"],
                            "number": number,
                            "ordinal": ordinal,
                            "status": FREE,
                            "booking_id": None,
                        }
                    )
                    ordinal += 1
                    capacity += 1
            page[SECTIONS].insert(
                {
                    "show_id": show_id,
                    "section": code,
                    "ordinal": position,
                    "kind": section["kind"],
                    "tier": section["tier"],
                    "price_cents": e.price_tiers[section["tier"]],
                    "capacity": capacity,
                    "held": 0,
                    "sold": 0,
                }
            )

    def _mark(self, page: Page, claim: Claim, status: str, booking_id: UUID | None) -> None:
        seats = page[SEATS]
        for seat in claim.seats:
            seats.set((claim.show_id, seat), status=status, booking_id=booking_id)

    def _count(self, page: Page, claim: Claim, **per_ticket: int) -> None:
        sections = page[SECTIONS]
        for section, n in claim.per_section().items():
            sections.add((claim.show_id, section), **{c: d * n for c, d in per_ticket.items()})

    def _held(self, page: Page, e: Any) -> None:
        claim = self.claims.held(page, e)
        if claim is not None:
            self._mark(page, claim, HELD, claim.booking_id)
            self._count(page, claim, held=1)

    def _sold(self, page: Page, e: Any) -> None:
        claim = self.claims.sold(page, e)
        if claim is not None:
            self._mark(page, claim, SOLD, claim.booking_id)
            self._count(page, claim, held=-1, sold=1)

    def _released(self, page: Page, e: Any) -> None:
        claim = self.claims.released(page, e)
        if claim is not None:
            self._mark(page, claim, FREE, None)
            self._count(page, claim, **({"sold": -1} if claim.sold else {"held": -1}))

    handlers = {
        INVENTORY_CREATED: _created,
        SEATS_HELD: _held,
        SEATS_SOLD: _sold,
        SEATS_RELEASED: _released,
    }
