"""The seat map of a show: seated sections (rows of numbered seats) and general admission.

Sections travel inside events as plain dicts, so they stay JSON-serialisable:
``{"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 20}]}`` or
``{"code": "GA", "kind": "general", "tier": "FLOOR", "capacity": 500}``.
A seat id is ``SECTION-ROW-NUMBER``, e.g. ``A-3-12``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from domain.errors import InvalidShowError

SEATED = "seated"
GENERAL = "general"
MAX_SEATS_PER_SHOW = 200_000
_CODE = re.compile(r"^[A-Za-z0-9]{1,16}\Z")  # \Z: "$" would accept a trailing newline


def seat_id(section: str, row: str, number: int) -> str:
    return f"{section}-{row}-{number}"


def validate_seat_map(
    price_tiers: Mapping[str, int], sections: Sequence[Mapping[str, Any]]
) -> None:
    """Raise InvalidShowError unless tiers and sections describe a sellable show."""
    if not price_tiers:
        raise InvalidShowError("a show needs at least one price tier")
    for code, cents in price_tiers.items():
        if not _CODE.match(code):
            raise InvalidShowError(f"invalid price tier code: {code!r}")
        if cents < 0:
            raise InvalidShowError(f"price tier {code} has a negative price")
    if not sections:
        raise InvalidShowError("a show needs at least one section")
    codes = [s["code"] for s in sections]
    if len(set(codes)) != len(codes):
        raise InvalidShowError("section codes must be unique")
    total = 0
    for section in sections:
        total += _validate_section(section, price_tiers)
    if total > MAX_SEATS_PER_SHOW:
        raise InvalidShowError(f"a show sells at most {MAX_SEATS_PER_SHOW} tickets")


def _validate_section(section: Mapping[str, Any], price_tiers: Mapping[str, int]) -> int:
    code = section["code"]
    if not _CODE.match(code):
        raise InvalidShowError(f"invalid section code: {code!r}")
    if section["tier"] not in price_tiers:
        raise InvalidShowError(f"section {code} uses unknown price tier {section['tier']!r}")
    if section["kind"] == GENERAL:
        capacity = int(section["capacity"])
        if capacity < 1:
            raise InvalidShowError(f"general section {code} needs a capacity of at least 1")
        return capacity
    if section["kind"] != SEATED:
        raise InvalidShowError(f"section {code} has unknown kind {section['kind']!r}")
    rows = section["rows"]
    if not rows:
        raise InvalidShowError(f"seated section {code} needs at least one row")
    labels = [r["label"] for r in rows]
    if len(set(labels)) != len(labels):
        raise InvalidShowError(f"row labels in section {code} must be unique")
    for row in rows:
        if not _CODE.match(row["label"]):
            raise InvalidShowError(f"invalid row label in section {code}: {row['label']!r}")
        if int(row["seats"]) < 1:
            raise InvalidShowError(f"row {row['label']} of section {code} has no seats")
    return sum(int(r["seats"]) for r in rows)


def iter_seats(sections: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str, str]]:
    """Yield (seat_id, section_code, tier) for every seat of the seated sections, in map order."""
    for section in sections:
        if section["kind"] != SEATED:
            continue
        for row in section["rows"]:
            for number in range(1, int(row["seats"]) + 1):
                yield (
                    seat_id(section["code"], row["label"], number),
                    section["code"],
                    section["tier"],
                )
