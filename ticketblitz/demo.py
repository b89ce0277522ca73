"""Demo data for `ticketblitz up --demo`: an admin, a customer and shows on sale.

Ids are derived from the titles, so loading twice (a restart) collides instead of duplicating.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict
from uuid import uuid5

from commands.errors import AccountExistsError, VersionConflictError
from commands.models import (
    GeneralSection,
    OpenSale,
    PriceTier,
    RegisterAccount,
    Row,
    ScheduleShow,
    SeatedSection,
    Section,
)
from domain.ids import TICKETBLITZ_NAMESPACE
from http_shell.container import Container

DEMO_ADMIN = ("admin@demo.ticketblitz.dev", "demo-admin-password")
DEMO_CUSTOMER = ("fan@demo.ticketblitz.dev", "demo-fan-password")

_SHOWS = [
    ("Blue Note Nights", "jazz", "Late-night trio sets: standards and bebop.", "Jazz Cellar"),
    ("Symphony No. 9", "classical", "Beethoven's ninth with full choir.", "Concert Hall"),
    ("Arena Rock Revival", "rock", "Stadium anthems, loud guitars, big chorus.", "City Arena"),
    ("Stand-up Marathon", "comedy", "Six comedians, one long night of laughs.", "Laugh Factory"),
    ("Swan Lake", "ballet", "The classic ballet in four acts.", "Opera House"),
    ("Techno Warehouse", "electronic", "DJs until dawn in a converted warehouse.", "Dock 9"),
]


class Venue(TypedDict):
    price_tiers: list[PriceTier]
    sections: list[Section]


def stalls_and_floor(
    rows: int, seats_per_row: int, floor: int, stalls_cents: int = 4500, floor_cents: int = 3000
) -> Venue:
    """The demo's hall: seated stalls "A" (tier STD, rows numbered from 1) and a standing
    floor "GA" (tier FLOOR) of `floor` places; the workload and the tests schedule it too."""
    return {
        "price_tiers": [
            PriceTier(code="STD", price_cents=stalls_cents),
            PriceTier(code="FLOOR", price_cents=floor_cents),
        ],
        "sections": [
            SeatedSection(
                code="A",
                kind="seated",
                tier="STD",
                rows=[Row(label=str(r), seats=seats_per_row) for r in range(1, rows + 1)],
            ),
            GeneralSection(code="GA", kind="general", tier="FLOOR", capacity=floor),
        ],
    }


def load_demo(container: Container) -> list[str]:
    """Create the demo accounts and shows (once); returns lines describing them."""
    created: list[str] = []
    demo_accounts = (
        RegisterAccount(
            email=DEMO_ADMIN[0], password=DEMO_ADMIN[1], name="Demo Admin", role="admin"
        ),
        RegisterAccount(
            email=DEMO_CUSTOMER[0], password=DEMO_CUSTOMER[1], name="Demo Fan", role="customer"
        ),
    )
    for account in demo_accounts:
        email = account.email
        try:
            container.accounts.register(account)
            created.append(f"account {email}")
        except AccountExistsError:
            pass
    start = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0)
    for days, (title, category, description, venue) in enumerate(_SHOWS, start=7):
        command = ScheduleShow(
            title=title,
            description=description,
            category=category,
            venue=venue,
            starts_at=start + timedelta(days=days),
            currency="EUR",
            **stalls_and_floor(rows=10, seats_per_row=20, floor=300),
        )
        show_id = uuid5(TICKETBLITZ_NAMESPACE, f"demo-show:{title}")
        try:
            container.shows.schedule_show(command, show_id=show_id)
            container.shows.open_sale(OpenSale(show_id=show_id)).result(timeout=30)
        except VersionConflictError:
            pass  # loaded by an earlier run
        created.append(f"show {show_id} {title} ({category})")
    return created
