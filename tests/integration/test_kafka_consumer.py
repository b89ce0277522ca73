"""Group consumers resume from the group's committed offsets after every (re)join.

kafka-python keeps a partition's fetch position across a rebalance; after a broker that lost
its data restarts, that position points past records of the re-created topic. The listener
`ResumeFromCommitted` makes the consumer go back to what the group committed. kafka-python
calls `on_partitions_assigned` on every join; the tests call it as it would.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from infra.embedded import StackEndpoints
from infra.kafka import KafkaPublisher, ResumeFromCommitted, group_consumer
from infra.settings import Settings
from tests.e2e.saga_support import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(endpoints: StackEndpoints) -> Iterator[str]:
    """A topic of one partition holding the records b"0" to b"4"."""
    assert endpoints.kafka_bootstrap is not None
    name = f"resume-{uuid4().hex[:8]}"
    KafkaPublisher(endpoints.kafka_bootstrap, [name], partitions=1).ensure_topics()
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)
    for n in range(5):
        producer.send(name, str(n).encode())
    producer.flush()
    producer.close()
    yield name


def subscribed(endpoints: StackEndpoints, topic: str) -> tuple[KafkaConsumer, ResumeFromCommitted]:
    settings = Settings(kafka_bootstrap=endpoints.kafka_bootstrap)
    consumer = group_consumer(settings, f"{topic}-group", "resume-test")
    rejoins = ResumeFromCommitted()
    consumer.subscribe([topic], listener=rejoins)
    return consumer, rejoins


def read_all(consumer: KafkaConsumer, rejoins: ResumeFromCommitted) -> list[bytes]:
    """Poll until five records came (a poll during which the group was joined is dropped)."""
    values: list[bytes] = []

    def five() -> bool:
        polled = consumer.poll(timeout_ms=500)
        if not rejoins.resume_if_rejoined(consumer):
            values.extend(r.value for records in polled.values() for r in records)
        return len(values) >= 5

    wait_until(five, 30, "five records")
    return values


def test_after_a_rejoin_the_consumer_reads_again_from_the_committed_offset(
    endpoints: StackEndpoints, topic: str
):
    consumer, rejoins = subscribed(endpoints, topic)
    try:
        assert read_all(consumer, rejoins) == [b"0", b"1", b"2", b"3", b"4"]
        partition = TopicPartition(topic, 0)
        consumer.commit({partition: OffsetAndMetadata(2, "", -1)})  # only 0 and 1 were done

        rejoins.on_partitions_assigned([partition])  # as kafka-python does on a rejoin
        assert rejoins.resume_if_rejoined(consumer)

        assert consumer.position(partition) == 2
        assert not rejoins.resume_if_rejoined(consumer)  # once per rejoin
    finally:
        consumer.close()


def test_after_a_rejoin_with_nothing_committed_the_consumer_starts_from_the_beginning(
    endpoints: StackEndpoints, topic: str
):
    consumer, rejoins = subscribed(endpoints, topic)
    try:
        read_all(consumer, rejoins)
        partition = TopicPartition(topic, 0)
        assert consumer.position(partition) == 5

        rejoins.on_partitions_assigned([partition])
        rejoins.resume_if_rejoined(consumer)

        assert consumer.position(partition) == 0
    finally:
        consumer.close()
