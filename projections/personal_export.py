"""A person's data as the read models and the notifier keep it, for `GET /me/export`: their
bookings, tickets, waiting-list entries and the e-mails sent to them. (The account itself is
read from the log by the caller, never stale.)"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

# Each part: the relation it needs (absent: an empty list) and its query.
PARTS: dict[str, tuple[str, str]] = {
    "bookings": (
        "read.bookings",
        "SELECT * FROM read.bookings WHERE customer_id = %(account)s ORDER BY placed_at",
    ),
    "tickets": (
        "read.tickets",
        "SELECT ticket_id, show_id, booking_id, seat, section, holder_name, status, "
        "admitted_at, gate, issued_at FROM read.tickets WHERE holder_id = %(account)s "
        "ORDER BY issued_at, ticket_id",
    ),
    "waitlist_entries": (
        "read.waitlist_entries",
        "SELECT * FROM read.waitlist_entries WHERE customer_id = %(account)s ORDER BY joined_at",
    ),
    "emails_sent": (
        "sent_emails",
        "SELECT event_id, event_type, recipient, status, created_at, sent_at FROM sent_emails "
        "WHERE %(email)s <> '' AND lower(recipient) = lower(%(email)s) ORDER BY created_at",
    ),
}


def personal_data_of(
    conn: psycopg.Connection[Any], account_id: UUID, email: str
) -> dict[str, list[dict[str, Any]]]:
    """Every part of PARTS for the person (rows as dicts, in their order)."""
    params = {"account": account_id, "email": email}
    found: dict[str, list[dict[str, Any]]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for part, (relation, query) in PARTS.items():
            exists = cur.execute("SELECT to_regclass(%s) AS r", (relation,)).fetchone()
            if exists is None or exists["r"] is None:
                found[part] = []
                continue
            found[part] = cur.execute(query, params).fetchall()  # type: ignore[arg-type]
    return found
