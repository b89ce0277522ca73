"""The recommender's read-your-writes watermark: the `recommender` row of `follower_positions`
is the highest log position P such that every show and booking event up to P has been applied
to the tables (or skipped as malformed).

It is checked against the event store in the same database, so `?after=P` waits
(read_api/recommendations.py) mean what they mean for the log followers. It stalls while the
relay or Kafka is behind."""

from __future__ import annotations

from typing import Any

import psycopg
from eventsourcing.utils import get_topic

from domain.booking import Booking
from domain.show import Show
from infra.event_store import EVENTS_TABLE
from process_managers.integration_events import BOOKING_TYPES, SHOW_TYPES
from projections.base import event_type
from recommender.projection import read_watermark, set_watermark


def _relayed_topics() -> list[str]:
    """The event store's topics of the domain events that the relay publishes."""
    kinds = ((Booking, BOOKING_TYPES), (Show, SHOW_TYPES))
    return [
        get_topic(event_type(aggregate, name.split(".", 1)[1]))
        for aggregate, names in kinds
        for name in names
    ]


RELAYED_TOPICS = _relayed_topics()


def applied_through(conn: psycopg.Connection[Any], schema: str, after: int) -> int:
    """The highest log position P >= `after` such that every show and booking event up to P is
    applied to `schema`'s tables (or was skipped as malformed): the position before the first
    event after `after` that is not, else the head of the log."""
    head_row = conn.execute(
        f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"
    ).fetchone()
    head = int(head_row[0]) if head_row else 0
    missing = conn.execute(
        f"""
        SELECT e.notification_id FROM {EVENTS_TABLE} e
        WHERE e.notification_id > %(after)s AND e.notification_id <= %(head)s
          AND e.topic = ANY(%(topics)s)
          AND NOT EXISTS (SELECT 1 FROM {schema}.show_vectors v
                          WHERE v.show_id = e.originator_id
                            AND v.position >= e.notification_id)
          AND NOT EXISTS (SELECT 1 FROM {schema}.bookings b
                          WHERE b.booking_id = e.originator_id
                            AND b.position >= e.notification_id)
          AND NOT EXISTS (SELECT 1 FROM {schema}.skipped_records k
                          WHERE k.position = e.notification_id)
        ORDER BY e.notification_id LIMIT 1
        """,
        {"after": after, "head": head, "topics": RELAYED_TOPICS},
    ).fetchone()
    return max(after, head if missing is None else int(missing[0]) - 1)


def advance_watermark(conn: psycopg.Connection[Any], schema: str) -> int:
    """Move the `recommender` position as far as `schema`'s tables are complete; returns it."""
    current = read_watermark(conn)
    reached = applied_through(conn, schema, current)
    if reached != current:
        set_watermark(conn, reached)
    return reached
