"""Tickets, by booking, show and holder: the show's door lists (domain/door.py) as rows. View:
`read.tickets`. A door list's events name their door list, not the show: the show of each door
list is kept in `door_lists` (from its Created event)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from domain.account import ERASED, Account
from domain.door import USED, VALID, VOID, DoorList
from infra.log_follower import LoggedEvent
from projections.base import Page, Projection, event_type
from projections.tables import Table

TICKETS = Table(
    "tickets",
    columns=(
        ("ticket_id", "uuid NOT NULL"),
        ("show_id", "uuid NOT NULL"),
        ("booking_id", "uuid NOT NULL"),
        ("seat", "text"),  # NULL: a general-admission place
        ("section", "text NOT NULL"),
        ("holder_id", "uuid NOT NULL"),
        ("holder_name", "text NOT NULL"),
        ("status", "text NOT NULL"),  # valid, used or void
        ("admitted_at", "timestamptz"),
        ("gate", "text"),
        ("issued_at", "timestamptz NOT NULL"),
        ("place_index", "integer NOT NULL"),  # its place in the booking: seats, then GA
    ),
    key=("ticket_id",),
    indexes=("(booking_id, place_index, issued_at)", "(show_id, status)", "(holder_id)"),
)

DOOR_LISTS = Table(
    "door_lists",
    columns=(("door_list_id", "uuid NOT NULL"), ("show_id", "uuid NOT NULL")),
    key=("door_list_id",),
)

ISSUED = event_type(DoorList, "TicketsIssued").__qualname__
TRANSFERRED = event_type(DoorList, "TicketTransferred").__qualname__
HOLDER_ERASED = event_type(Account, "Erased").__qualname__

COLUMNS = (
    "ticket_id, show_id, booking_id, seat, section, holder_id, holder_name, status, "
    "admitted_at, gate, issued_at"
)


class Tickets(Projection):
    kind = "tickets"
    tables = (TICKETS, DOOR_LISTS)
    views = {"tickets": "tickets"}

    def prepare(
        self, conn: psycopg.Connection[Any], changes: Page, page: Sequence[LoggedEvent]
    ) -> None:
        """Issues need their door list's show, transfers the ticket they replace."""
        doors = [logged.event.originator_id for logged in page if logged.type_name == ISSUED]
        transferred = [logged.event.ticket_id for logged in page if logged.type_name == TRANSFERRED]
        if doors:
            changes[DOOR_LISTS].load(conn, self.schema, doors)
        if transferred:
            changes[TICKETS].load(conn, self.schema, transferred)
        erased = [
            logged.event.originator_id for logged in page if logged.type_name == HOLDER_ERASED
        ]
        if erased:  # their tickets stay (seats, status), but name nobody (docs/PRIVACY.md)
            query = sql.SQL("SELECT ticket_id FROM {}.tickets WHERE holder_id = ANY(%s)")
            found = conn.execute(query.format(sql.Identifier(self.schema)), (erased,))
            held = [row[0] for row in found.fetchall()]
            changes[TICKETS].load(conn, self.schema, held)

    def _created(self, page: Page, e: Any) -> None:
        page[DOOR_LISTS].insert({"door_list_id": e.originator_id, "show_id": e.show_id})

    def _issued(self, page: Page, e: Any) -> None:
        door = page[DOOR_LISTS].get(e.originator_id)
        if door is None:  # cannot happen: a door list's Created comes first
            raise LookupError(f"door list {e.originator_id} was never created")
        for index, ticket in enumerate(e.tickets):
            page[TICKETS].insert(
                {
                    "ticket_id": ticket["ticket_id"],
                    "show_id": door["show_id"],
                    "booking_id": e.booking_id,
                    "seat": ticket["seat"],
                    "section": ticket["section"],
                    "holder_id": e.holder_id,
                    "holder_name": ticket["holder_name"],
                    "status": VALID,
                    "admitted_at": None,
                    "gate": None,
                    "issued_at": e.timestamp,
                    "place_index": index,
                }
            )

    def _voided(self, page: Page, e: Any) -> None:
        for ticket_id in e.ticket_ids:
            page[TICKETS].set(ticket_id, status=VOID)

    def _admitted(self, page: Page, e: Any) -> None:
        page[TICKETS].set(e.ticket_id, status=USED, admitted_at=e.at, gate=e.gate)

    def _transferred(self, page: Page, e: Any) -> None:
        old = page[TICKETS].get(e.ticket_id)
        if old is None:
            raise LookupError(f"ticket {e.ticket_id} was never issued")
        page[TICKETS].set(e.ticket_id, status=VOID)
        page[TICKETS].insert(
            {
                **old,
                "ticket_id": e.new_ticket_id,
                "holder_id": e.to_holder_id,
                "holder_name": e.to_holder_name,
                "status": VALID,
                "admitted_at": None,
                "gate": None,
                "issued_at": e.timestamp,
            }
        )

    def _holder_erased(self, page: Page, e: Any) -> None:
        rows = page[TICKETS]
        for row in [*rows.inserts.values(), *rows.loaded.values()]:
            if row["holder_id"] == e.originator_id:
                rows.set(row["ticket_id"], holder_name=ERASED)

    handlers = {
        event_type(DoorList, "Created"): _created,
        event_type(DoorList, "TicketsIssued"): _issued,
        event_type(DoorList, "TicketsVoided"): _voided,
        event_type(DoorList, "TicketAdmitted"): _admitted,
        event_type(DoorList, "TicketTransferred"): _transferred,
        event_type(Account, "Erased"): _holder_erased,
    }


def tickets_of_booking(conn: psycopg.Connection[Any], booking_id: UUID) -> list[dict[str, Any]]:
    """The booking's tickets by place (seats, then GA), each place's successors after it."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT " + COLUMNS + " FROM read.tickets WHERE booking_id = %s "
            "ORDER BY place_index, issued_at",
            (booking_id,),
        ).fetchall()
