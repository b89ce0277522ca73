"""The seat map as a picture: positions for every seat of the read model's seat map (the same
JSON the query API serves and caches), drawn by the `_seatmap.html` macro as SVG."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.money import money
from projections.positions import lowest
from projections.read_side import ReadSide
from projections.registry import CATALOG, SEAT_MAP

PITCH = 20  # px between seat centres
RADIUS = 7
LEFT = 44  # room for the row labels
SECTION_GAP = 34
GA_HEIGHT = 44
STATUS_WORDS = {"free": "available", "held": "on hold", "sold": "sold", "blocked": "not on sale"}


@dataclass(frozen=True)
class SeatDot:
    seat: str
    label: str  # what people read: "Section A, row 3, seat 12"
    status: str
    x: int
    y: int
    tier_class: str
    price: str


@dataclass(frozen=True)
class RowLabel:
    text: str
    x: int
    y: int


@dataclass(frozen=True)
class SectionBlock:
    code: str
    kind: str
    tier: str
    tier_class: str
    price: str
    available: int
    capacity: int
    y: int  # the heading's baseline
    height: int  # general admission: the box's height


@dataclass(frozen=True)
class SeatMapLayout:
    width: int
    height: int
    position: int
    seats: list[SeatDot]
    rows: list[RowLabel]
    sections: list[SectionBlock]
    tiers: list[tuple[str, str, str]]  # (tier, css class, price) for the legend

    @property
    def sold_out(self) -> bool:
        return all(s.available <= 0 for s in self.sections)


def seat_label(seat: str) -> str:
    """ "A-3-12" -> "Section A, row 3, seat 12" (seat ids are section-row-number)."""
    section, _, rest = seat.partition("-")
    row, _, number = rest.rpartition("-")
    if not row:
        return seat
    return f"Section {section}, row {row}, seat {number}"


def layout(data: dict[str, Any], currency: str) -> SeatMapLayout:
    sections = data.get("sections") or []
    prices = {s["tier"]: int(s["price_cents"]) for s in sections}
    ranked = sorted(prices, key=lambda tier: -prices[tier])
    tier_class = {tier: f"tier-{min(i, 3)}" for i, tier in enumerate(ranked)}
    seats: list[SeatDot] = []
    rows: list[RowLabel] = []
    blocks: list[SectionBlock] = []
    widest = 10
    y = 40  # below the stage
    for section in sections:
        tier = section["tier"]
        price = money(int(section["price_cents"]), currency)
        y += SECTION_GAP
        general = section["kind"] != "seated" or not section["rows"]
        blocks.append(
            SectionBlock(
                section["code"],
                section["kind"],
                tier,
                tier_class[tier],
                price,
                int(section["available"]),
                int(section["capacity"]),
                y - 14,
                GA_HEIGHT if general else 0,
            )
        )
        if general:
            y += GA_HEIGHT
            continue
        for row in section["rows"]:
            rows.append(RowLabel(str(row["label"]), LEFT - 14, y + 4))
            widest = max(widest, len(row["seats"]))
            for index, seat in enumerate(row["seats"]):
                seats.append(
                    SeatDot(
                        seat["seat"],
                        seat_label(seat["seat"]),
                        seat["status"],
                        LEFT + index * PITCH,
                        y,
                        tier_class[tier],
                        price,
                    )
                )
            y += PITCH
    width = LEFT + widest * PITCH + 10
    legend = [(tier, tier_class[tier], money(prices[tier], currency)) for tier in ranked]
    return SeatMapLayout(width, y + 10, int(data.get("position", 0)), seats, rows, blocks, legend)


async def seat_map_data(read: ReadSide, show_id: UUID) -> dict[str, Any] | None:
    """The seat map JSON through the read cache (the query API's entry for the show), read
    from the read model on a miss. Never the event store."""
    key = f"seats:{show_id}"
    hit = await asyncio.to_thread(read.cache.get, key, None)
    if hit is not None:
        cached: dict[str, Any] = json.loads(hit.body)
        return cached
    position = lowest(await asyncio.to_thread(read.positions.current), [CATALOG, SEAT_MAP])
    body = await asyncio.to_thread(read.models.seat_map_json, show_id, position)
    if body is None:
        return None
    await asyncio.to_thread(read.cache.put, key, position, body)
    loaded: dict[str, Any] = json.loads(body)
    return loaded
