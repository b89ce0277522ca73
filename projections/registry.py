"""The read models TicketBlitz maintains, by name."""

from __future__ import annotations

from collections.abc import Iterable

from projections.accounts import Accounts
from projections.base import Projection
from projections.bookings import Bookings
from projections.catalog import Catalog
from projections.reports import Reports
from projections.sales import Sales
from projections.seat_map import SeatMap
from projections.tickets import Tickets
from projections.waitlist import Waitlist

CATALOG = Catalog.kind
SEAT_MAP = SeatMap.kind
BOOKINGS = Bookings.kind
SALES = Sales.kind
REPORTS = Reports.kind
ACCOUNTS = Accounts.kind
TICKETS = Tickets.kind
WAITLIST = Waitlist.kind

PROJECTIONS: dict[str, type[Projection]] = {
    kind.kind: kind
    for kind in (Catalog, SeatMap, Bookings, Sales, Reports, Accounts, Tickets, Waitlist)
}


class UnknownProjectionError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
        self.name = name


def projection_kinds(names: Iterable[str] | None = None) -> list[type[Projection]]:
    """The projection classes for these names (all of them for None), in registry order."""
    if names is None:
        return list(PROJECTIONS.values())
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if name not in PROJECTIONS:
            raise UnknownProjectionError(name)
    return [kind for name, kind in PROJECTIONS.items() if name in wanted]
