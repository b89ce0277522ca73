"""Kafka with kafka-python: an idempotent publisher that reports only acknowledged sends, and
group consumers tuned for Tansu (shared/STACK.md) and any other Kafka."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from infra.settings import Settings

log = logging.getLogger(__name__)


class KafkaUnavailableError(ConnectionError):
    """The broker did not acknowledge (down, unreachable, or it lost our producer's state).
    A ConnectionError, so that log followers treat it like any outage: retry later."""


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()  # e.g. the trace context (infra/tracing.py)


class KafkaPublisher:
    """Sends a batch and returns only once the broker acknowledged every message of it
    (acks=all, idempotent producer). After any failure the producer is rebuilt: a broker
    that restarted (and, embedded, lost its topics) gets its topics created again."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        partitions: int = 3,
        timeout_seconds: float = 10.0,
        client_id: str = "ticketblitz-relay",
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._partitions = partitions
        self._timeout = timeout_seconds
        self._client_id = client_id
        self._producer: KafkaProducer | None = None

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        try:
            producer = self._producer or self._connect()
            sent = [
                producer.send(
                    m.topic, key=m.key.encode(), value=m.value, headers=list(m.headers) or None
                )
                for m in messages
            ]
            producer.flush(timeout=self._timeout)
            for future in sent:
                future.get(timeout=0)  # raises the delivery error, if any
        except KafkaError as error:
            self.close()
            raise KafkaUnavailableError(f"Kafka at {self._bootstrap}: {error!r}") from error

    def _connect(self) -> KafkaProducer:
        self.ensure_topics()
        timeout_ms = int(self._timeout * 1000)
        self._producer = KafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            delivery_timeout_ms=timeout_ms + 5,
            reconnect_backoff_max_ms=1000,
        )
        return self._producer

    def ensure_topics(self) -> None:
        admin = KafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-admin",
            request_timeout_ms=int(self._timeout * 1000),
        )
        try:
            existing = set(admin.list_topics())
            missing = [t for t in self._topics if t not in existing]
            if missing:
                with suppress(TopicAlreadyExistsError):  # created by someone else meanwhile
                    admin.create_topics([NewTopic(t, self._partitions, 1) for t in missing])
                log.info("created Kafka topics %s", ", ".join(missing))
        finally:
            admin.close()

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:  # unsent batches expire within the delivery timeout: then it can close cleanly
            producer.close(timeout=self._timeout * 2)
        except KafkaError as error:
            log.warning("the Kafka producer did not close cleanly: %r", error)


def group_consumer(settings: Settings, group_id: str, client_id: str) -> KafkaConsumer:
    """A consumer in a group that commits offsets itself, after its work is done."""
    assert settings.kafka_bootstrap is not None
    return KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
    )


class TopicIncarnations:
    """Notices a subscribed topic that was deleted and created again under the same name (a
    broker that keeps topics in memory comes back empty; an operator re-created a topic).

    A consumer that stays in its group across that keeps its fetch positions: offsets of the
    old incarnation, at which the new one would be read from the middle, records before them
    never seen. Whoever notices rewinds that topic's partitions to the new one's beginning
    (consumers here are idempotent: reading again costs no duplicate)."""

    def __init__(self) -> None:
        self._ids: dict[str, Any] = {}

    def recreated(self, consumer: KafkaConsumer) -> set[str]:
        """Topics whose id changed since the last call (the client's cached metadata)."""
        cluster = consumer._client.cluster  # the topic id is only known there
        changed = set()
        for topic in consumer.subscription() or ():
            current = cluster.topic_id(topic)
            if current is None:
                continue
            previous = self._ids.get(topic)
            if previous is not None and previous != current:
                changed.add(topic)
            self._ids[topic] = current
        return changed

    def rewind_recreated(self, consumer: KafkaConsumer) -> set[str]:
        """Rewind the assigned partitions of every recreated topic to their beginning; which."""
        changed = self.recreated(consumer)
        partitions = [tp for tp in consumer.assignment() if tp.topic in changed]
        if partitions:
            log.warning("topics %s were created again: reading them from the start", changed)
            consumer.seek_to_beginning(*partitions)
        return changed
