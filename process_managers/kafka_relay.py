"""The relay: follows the event store and publishes integration events to Kafka.

The event store is the outbox. A page of events is published, then the producer is flushed
and every send checked before `handle` returns; the follower's position is updated after that,
in the page's transaction. So the position only moves past what the broker acknowledged: after
an outage the relay resumes where it stopped. Delivery is at least once (a crash between the
broker's ack and the commit publishes a page again); the stable event ids let consumers
deduplicate. A broker that lost its data (the embedded one keeps topics in memory) is re-fed
with `ticketblitz relay refeed --from POS`, which moves the relay's position back.

When tracing, each message is a PRODUCER span in the trace of the event it comes from, ended
once the broker acknowledged it, and carries that span's context in a `traceparent` header.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from opentelemetry.trace import Span

from commands.ports import Connections
from infra import tracing
from infra.kafka import KafkaPublisher, OutgoingMessage
from infra.log_follower import LoggedEvent
from process_managers.integration_events import IntegrationEvents

RELAY_NAME = "kafka-relay"


class KafkaRelay:
    """PageHandler publishing each page's integration events, keyed by show id."""

    name = RELAY_NAME

    def __init__(
        self, events: IntegrationEvents, publisher: KafkaPublisher, topics: dict[str, str]
    ) -> None:
        self._events = events
        self._publisher = publisher
        self._topics = topics  # stream -> topic name

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        """Nothing in PostgreSQL; the publisher creates its topics when it connects."""

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        spans: list[Span | None] = []
        try:
            messages = []
            for logged in page:
                event = self._events.build(logged)
                if event is None:
                    continue
                topic = self._topics[event.stream]
                span = tracing.start_producer_span(topic, logged.traceparent, event.event_id)
                spans.append(span)
                headers = tracing.kafka_headers(span)
                messages.append(
                    OutgoingMessage(topic, str(event.show_id), event.to_json(), headers)
                )
            self._publisher.publish(messages)
        except BaseException as error:
            tracing.end_producer_spans(spans, error)
            self._events.forget()  # the page will be redone: rebuild states from the store
            raise
        tracing.end_producer_spans(spans, None)


def rewind(store: Connections, position: int, name: str = RELAY_NAME) -> int:
    """Move a follower back so that it handles again every event after `position`; returns
    the position it was at. A running follower notices and continues from there."""
    with store.connection() as conn, conn.transaction():
        row = conn.execute(
            "SELECT position FROM follower_positions WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        if row is None:
            raise ValueError(f"no follower named {name} has run yet")
        current = int(row[0])
        if position > current:
            raise ValueError(f"{name} is at {current}: it can only be moved back")
        conn.execute(
            "UPDATE follower_positions SET position = %s, updated_at = now() WHERE name = %s",
            (position, name),
        )
    return current
