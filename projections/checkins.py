"""Check-in figures and the offline kit's lists, read from the tickets read model
(projections/tickets.py, `read.tickets`): a ticket's `admitted_at` and `gate` are set by its
TicketAdmitted event and kept when it is voided later (an admission stays counted)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from domain.door import VALID, VOID


@dataclass(frozen=True)
class MinuteCount:
    minute: datetime  # the minute's start (UTC)
    admitted: int
    by_gate: dict[str, int]


@dataclass(frozen=True)
class CheckinStats:
    admitted: int
    by_gate: dict[str, int]
    by_minute: list[MinuteCount]  # minutes with admissions, in order
    valid_outside: int  # valid tickets not admitted yet
    void: int


def checkin_stats(conn: psycopg.Connection[Any], show_id: UUID) -> CheckinStats:
    """Admissions of the show by gate and by minute (by the time the gate scanned), and the
    valid tickets still outside."""
    rows = conn.execute(
        "SELECT date_trunc('minute', admitted_at, 'UTC'), gate, count(*) FROM read.tickets "
        "WHERE show_id = %s AND admitted_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
        (show_id,),
    ).fetchall()
    by_gate: dict[str, int] = {}
    minutes: dict[datetime, dict[str, int]] = {}
    for minute, gate, count in rows:
        by_gate[gate] = by_gate.get(gate, 0) + count
        minutes.setdefault(minute, {})[gate] = count
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE status = %s AND admitted_at IS NULL), "
        "count(*) FILTER (WHERE status = %s) FROM read.tickets WHERE show_id = %s",
        (VALID, VOID, show_id),
    ).fetchone()
    valid_outside, void = (0, 0) if counts is None else (counts[0], counts[1])
    return CheckinStats(
        admitted=sum(by_gate.values()),
        by_gate=dict(sorted(by_gate.items())),
        by_minute=[MinuteCount(m, sum(g.values()), g) for m, g in minutes.items()],
        valid_outside=valid_outside,
        void=void,
    )


@dataclass(frozen=True)
class KitLists:
    void: list[UUID]  # tickets a gate must refuse
    admitted: list[UUID]  # admitted already (a second entry is a duplicate)
    valid: int  # valid tickets not admitted yet


def kit_lists(conn: psycopg.Connection[Any], show_id: UUID) -> KitLists:
    rows = conn.execute(
        "SELECT ticket_id, status, admitted_at IS NOT NULL FROM read.tickets "
        "WHERE show_id = %s ORDER BY ticket_id",
        (show_id,),
    ).fetchall()
    void = [r[0] for r in rows if r[1] == VOID]
    admitted = [r[0] for r in rows if r[1] != VOID and r[2]]
    valid = sum(1 for r in rows if r[1] == VALID and not r[2])
    return KitLists(void, admitted, valid)
