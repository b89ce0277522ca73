"""What the organiser console and the door page read: the organiser's shows with their figures,
the shows a door can scan, a show's sales over time as an SVG chart's geometry. Read models
only (the `read` views), never the event store: these pages stay cheap during an on-sale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from commands.venue_time import local, local_time
from projections.reports import movement_span, sales_series

Row = dict[str, Any]

# Everyone's shows for an admin, an organiser's own otherwise (NULL organiser: admins only).
MANAGED_SHOWS = """
SELECT s.show_id, s.title, s.venue, s.starts_at, s.time_zone, s.status, s.currency,
       coalesce(ss.tickets_sold, 0) AS tickets_sold,
       coalesce(ss.tickets_held, 0) AS tickets_held,
       coalesce(ss.paid_cents, 0) - coalesce(ss.refunded_cents, 0) AS revenue_cents,
       (SELECT count(*) FROM read.waitlist_entries w
         WHERE w.show_id = s.show_id AND w.status = 'waiting') AS waiting
FROM read.shows s LEFT JOIN read.show_sales ss ON ss.show_id = s.show_id
WHERE %(everyone)s OR s.organizer_id = %(organizer)s
ORDER BY s.starts_at, s.show_id
LIMIT %(limit)s
"""

# Shows a door may scan: not cancelled, not long over; an organiser's own only.
DOOR_SHOWS = """
SELECT show_id, title, venue, starts_at, time_zone, status FROM read.shows
WHERE status <> 'cancelled' AND starts_at > %(since)s
  AND (%(everyone)s OR organizer_id = %(organizer)s)
ORDER BY starts_at, show_id
LIMIT %(limit)s
"""

MAX_SHOWS = 200
CHART_WIDTH = 600
CHART_HEIGHT = 160
SPARK_WIDTH = 160
SPARK_HEIGHT = 36
MAX_POINTS = 240


def managed_shows(
    conn: psycopg.Connection[Any], organizer_id: UUID, everyone: bool, limit: int = MAX_SHOWS
) -> list[Row]:
    """The shows the account manages (an admin: all), by start, with their figures now."""
    with conn.cursor(row_factory=dict_row) as cur:
        params = {"everyone": everyone, "organizer": organizer_id, "limit": limit}
        return cur.execute(MANAGED_SHOWS, params).fetchall()


def door_shows(
    conn: psycopg.Connection[Any], account_id: UUID, everyone: bool, now: datetime
) -> list[Row]:
    """Shows a door scans: those not cancelled that started less than 12 hours ago or later."""
    params = {
        "since": now - timedelta(hours=12),
        "everyone": everyone,
        "organizer": account_id,
        "limit": MAX_SHOWS,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(DOOR_SHOWS, params).fetchall()


def waiting_count(conn: psycopg.Connection[Any], show_id: UUID) -> int:
    row = conn.execute(
        "SELECT count(*) FROM read.waitlist_entries WHERE show_id = %s AND status = 'waiting'",
        (show_id,),
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Chart:
    """A cumulative tickets-sold line: SVG polyline points in a width x height box, and what
    the axes say (in the venue's zone)."""

    width: int
    height: int
    points: str  # "x,y x,y ..." ("" when nothing was sold yet)
    area: str  # the polygon under the line
    peak: int  # tickets at the top of the y axis
    total: int
    start_label: str
    end_label: str
    bucket: str
    empty: bool


def _bucket_for(span: timedelta) -> str:
    if span <= timedelta(hours=MAX_POINTS // 60):
        return "minute"
    if span <= timedelta(hours=MAX_POINTS):
        return "hour"
    return "day"


def sales_chart(
    conn: psycopg.Connection[Any],
    show_id: UUID,
    zone: str | None,
    now: datetime,
    width: int = CHART_WIDTH,
    height: int = CHART_HEIGHT,
) -> Chart:
    """Tickets sold so far (net of refunds), summed per minute, hour or day from the first
    sale until now, as a rising line."""
    span = movement_span(conn, show_id)
    if span is None:
        return Chart(width, height, "", "", 0, 0, "", "", "hour", True)
    start, end = span[0], max(span[1], now)
    bucket = _bucket_for(end - start)
    step = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}.get(
        bucket, timedelta(days=1)
    )
    found = sales_series(conn, show_id, bucket, start - step, end + step)
    # From one bucket before the first sale: the line rises from zero, even for one bucket.
    totals: list[tuple[datetime, int]] = [(min(found) - step, 0)] if found else []
    running = 0
    for at in sorted(found):
        running += found[at]["tickets_sold"] - found[at]["tickets_refunded"]
        totals.append((at, running))
    return chart_of(totals, end, zone, bucket, width, height)


def chart_of(
    totals: list[tuple[datetime, int]],
    end: datetime,
    zone: str | None,
    bucket: str,
    width: int,
    height: int,
) -> Chart:
    """The geometry of a cumulative line through `totals` (bucket start, running total),
    held flat until `end`."""
    if not totals:
        return Chart(width, height, "", "", 0, 0, "", "", bucket, True)
    first = totals[0][0]
    seconds = max((end - first).total_seconds(), 1.0)
    peak = max(max(total for _, total in totals), 1)
    pad = 4

    def x(at: datetime) -> float:
        return pad + (width - 2 * pad) * (at - first).total_seconds() / seconds

    def y(total: int) -> float:
        return height - pad - (height - 2 * pad) * max(total, 0) / peak

    coords: list[tuple[float, float]] = [(x(first), y(0))]
    previous = 0
    for at, total in totals:
        coords.append((x(at), y(previous)))  # a step: flat until the bucket, then up
        coords.append((x(at), y(total)))
        previous = total
    coords.append((x(end), y(previous)))
    points = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
    area = f"{points} {x(end):.1f},{y(0):.1f} {x(first):.1f},{y(0):.1f}"
    return Chart(
        width=width,
        height=height,
        points=points,
        area=area,
        peak=peak,
        total=previous,
        start_label=local_time(first, zone),
        end_label=local_time(end, zone),
        bucket=bucket,
        empty=False,
    )


def input_time(moment: datetime | None, zone: str | None) -> str:
    """A time as an `<input type="datetime-local">` shows it, on the venue's clock."""
    if moment is None:
        return ""
    return local(moment, zone).strftime("%Y-%m-%dT%H:%M")


def seat_label(seat: str | None, section: str | None = None) -> str:
    """A seat as people read it: "A-3-12" -> "Section A, row 3, seat 12"; a general-admission
    place names its section."""
    if seat:
        parts = seat.split("-")
        if len(parts) == 3:
            return f"Section {parts[0]}, row {parts[1]}, seat {parts[2]}"
        return seat
    return f"Section {section}, general admission" if section else "General admission"
