"""Demo data for `ticketblitz up --demo`: an admin, a customer and shows on sale.

Ids are derived from the titles, so loading twice (a restart) collides instead of duplicating.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
            price_tiers=[
                PriceTier(code="STD", price_cents=4500),
                PriceTier(code="FLOOR", price_cents=3000),
            ],
            sections=[
                SeatedSection(
                    code="A",
                    kind="seated",
                    tier="STD",
                    rows=[Row(label=str(r), seats=20) for r in range(1, 11)],
                ),
                GeneralSection(code="GA", kind="general", tier="FLOOR", capacity=300),
            ],
        )
        show_id = uuid5(TICKETBLITZ_NAMESPACE, f"demo-show:{title}")
        try:
            container.shows.schedule_show(command, show_id=show_id)
            container.shows.open_sale(OpenSale(show_id=show_id)).result(timeout=30)
        except VersionConflictError:
            pass  # loaded by an earlier run
        created.append(f"show {show_id} {title} ({category})")
    return created
