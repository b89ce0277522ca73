"""The attendee list as CSV rows: one row per booking of a show (`read.bookings`, paged by
`projections.reports.attendee_page`), the same columns for the query API's
`GET /shows/{id}/attendees.csv` and the organiser console's download."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from domain.money import plain_amount

# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")

COLUMNS = (
    "booking_id",
    "customer_id",
    "customer_name",
    "customer_email",
    "seats",
    "tickets",
    "status",
    "amount",
    "paid",
    "refunded",
    "currency",
    "reason",
    "placed_at",
    "updated_at",
)


def money(cents: int, currency: str = "") -> str:
    """An amount in the currency's units with its ISO 4217 decimals and no symbol or
    thousands separator: 4500 EUR -> "45.00", 4500 JPY -> "4500", 4500 KWD -> "4.500"."""
    return plain_amount(cents, currency)


def neutralised(text: str | None) -> str:
    """Text a spreadsheet shows as text: a leading formula character gets a quote before it."""
    if not text:
        return ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def seats_cell(seats: list[str], general: dict[str, int]) -> str:
    """Seat ids, then general admission per section: "A-1-3 A-1-4 GA:2"."""
    return " ".join([*seats, *(f"{section}:{n}" for section, n in sorted(general.items()))])


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def attendee_row(row: dict[str, Any]) -> list[str]:
    return [
        str(row["booking_id"]),
        str(row["customer_id"]),
        neutralised(row["customer_name"]),
        neutralised(row["customer_email"]),
        neutralised(seats_cell(row["seats"], row["general"])),
        str(row["quantity"]),
        row["status"],
        money(row["amount_cents"], row["currency"]),
        money(row["paid_cents"], row["currency"]),
        money(row["refunded_cents"], row["currency"]),
        row["currency"],
        neutralised(row["reason"]),
        _utc(row["placed_at"]),
        _utc(row["updated_at"]),
    ]


def csv_chunk(rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)  # RFC 4180: quotes, commas and line breaks quoted, CRLF
    return out.getvalue().encode("utf-8")
