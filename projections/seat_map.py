"""Per show: every seat with its status (free, held, sold or blocked), and per section its
capacity, held, sold and blocked counts and what is available. Follows the organiser's controls
too: blocked seats, GA capacity changes and tier prices. Views: `read.seats`,
`read.show_sections`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from domain.inventory import SeatInventory
from domain.seatmap import GENERAL, seat_id
from infra.log_follower import LoggedEvent
from projections.base import Page, Projection, event_type
from projections.claims import (
    CLAIMS,
    INVENTORIES,
    INVENTORY_CREATED,
    SEATS_HELD,
    SEATS_RELEASED,
    SEATS_SOLD,
    Claim,
    Claims,
    section_of,
)
from projections.tables import Table

FREE = "free"
HELD = "held"
SOLD = "sold"
BLOCKED = "blocked"

SEATS_BLOCKED = event_type(SeatInventory, "SeatsBlocked")
SEATS_UNBLOCKED = event_type(SeatInventory, "SeatsUnblocked")
CAPACITY_CHANGED = event_type(SeatInventory, "GeneralCapacityChanged")
TIER_REPRICED = event_type(SeatInventory, "TierRepriced")
_CONTROLS = (SEATS_BLOCKED, SEATS_UNBLOCKED, CAPACITY_CHANGED, TIER_REPRICED)

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
        ("blocked", "integer NOT NULL"),  # seats the organiser took off sale
    ),
    key=("show_id", "section"),
    extra=("available integer GENERATED ALWAYS AS (capacity - held - sold - blocked) STORED",),
)


class SeatMap(Projection):
    kind = "seat_map"
    tables = (SEATS, SECTIONS, INVENTORIES, CLAIMS)
    views = {"seats": "seats", "show_sections": "sections"}

    def __init__(self, generation: int) -> None:
        super().__init__(generation)
        self.claims = Claims(CLAIMS)
        self._shows: dict[UUID, UUID] = {}  # inventory -> show (never changes)
        self._tiers: dict[UUID, list[tuple[str, str]]] = {}  # show -> (section, tier), this page

    def prepare(
        self, conn: psycopg.Connection[Any], changes: Page, page: Sequence[LoggedEvent]
    ) -> None:
        self.claims.prepare(conn, self.schema, changes, page)
        controls: list[Any] = [p.event for p in page if type(p.event) in _CONTROLS]
        if not controls:
            return
        inventories = changes[INVENTORIES]
        inventories.load(conn, self.schema, {e.originator_id for e in controls} - set(self._shows))
        for row in inventories.loaded.values():
            self._shows[row["inventory_id"]] = row["show_id"]
        repriced = {self._shows.get(e.originator_id) for e in controls if _is_repricing(e)}
        repriced.discard(None)
        self._tiers = {}
        if repriced:
            rows = conn.execute(
                sql.SQL("SELECT show_id, section, tier FROM {}.{} WHERE show_id = ANY(%s)").format(
                    sql.Identifier(self.schema), sql.Identifier(SECTIONS.name)
                ),
                (list(repriced),),
            ).fetchall()
            for show_id, section, tier in rows:
                self._tiers.setdefault(show_id, []).append((section, tier))

    def _created(self, page: Page, e: Any) -> None:
        show_id = self.claims.created(page, e)
        self._shows[e.originator_id] = show_id
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
                    "blocked": 0,
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

    def _blocked(self, page: Page, e: Any) -> None:
        self._block(page, e, BLOCKED, 1)

    def _unblocked(self, page: Page, e: Any) -> None:
        self._block(page, e, FREE, -1)

    def _block(self, page: Page, e: Any, status: str, delta: int) -> None:
        show_id = self._shows.get(e.originator_id)
        if show_id is None:
            return  # an inventory this read model never saw created
        seats, sections = page[SEATS], page[SECTIONS]
        for seat in e.seats:
            seats.set((show_id, seat), status=status, booking_id=None)
            sections.add((show_id, section_of(seat)), blocked=delta)

    def _capacity_changed(self, page: Page, e: Any) -> None:
        show_id = self._shows.get(e.originator_id)
        if show_id is not None:
            page[SECTIONS].set((show_id, e.section), capacity=e.capacity)

    def _repriced(self, page: Page, e: Any) -> None:
        """The price of the tier's sections: those stored, and those created in this page."""
        show_id = self._shows.get(e.originator_id)
        if show_id is None:
            return
        sections = page[SECTIONS]
        stored = self._tiers.get(show_id, [])
        created = [
            (r["section"], r["tier"]) for r in sections.inserts.values() if r["show_id"] == show_id
        ]
        for section, tier in {*stored, *created}:
            if tier == e.tier:
                sections.set((show_id, section), price_cents=e.price_cents)

    handlers = {
        INVENTORY_CREATED: _created,
        SEATS_HELD: _held,
        SEATS_SOLD: _sold,
        SEATS_RELEASED: _released,
        SEATS_BLOCKED: _blocked,
        SEATS_UNBLOCKED: _unblocked,
        CAPACITY_CHANGED: _capacity_changed,
        TIER_REPRICED: _repriced,
    }


def _is_repricing(e: Any) -> bool:
    return type(e) is TIER_REPRICED
