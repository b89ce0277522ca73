"""A group consumer after the broker lost its data (the embedded broker keeps topics in memory).

When the broker restarts empty and the relay re-creates a topic and fills it again, the
notifier's consumer must read the new topic from its start, not from the offset it had reached
in the old one: kafka-python revokes every partition when the group membership is lost and,
with no committed offsets left, starts from the earliest. But a consumer that fetches from the
new topic before it notices the lost membership does so at its old offset, skipping the new
topic's first records: the notifier also watches the topics' ids (`TopicIncarnations`) and
rewinds a topic that was created again.
"""

from __future__ import annotations

from contextlib import suppress
from uuid import uuid4

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError
from kafka.structs import TopicPartition

from infra.kafka import KafkaPublisher, TopicIncarnations, group_consumer
from infra.settings import Settings
from tests.e2e.saga_support import wait_until
from tests.faults.support import own_stack

pytestmark = pytest.mark.integration


def publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Create the topic (one partition) if it is missing and append these records."""
    KafkaPublisher(bootstrap, [topic], partitions=1).ensure_topics()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for value in values:
        producer.send(topic, value)
    producer.flush()
    producer.close()


def read_until(consumer: KafkaConsumer, wanted: set[bytes]) -> list[bytes]:
    """Poll and commit as the notifier does until every wanted value came; all values read."""
    values: list[bytes] = []

    def all_read() -> bool:
        polled = consumer.poll(timeout_ms=500)
        values.extend(r.value for records in polled.values() for r in records)
        if polled:
            with suppress(CommitFailedError):  # the group is rejoined at the next poll
                consumer.commit()
        return wanted <= set(values)

    wait_until(all_read, 60, f"the records {sorted(wanted)}")
    return values


def test_a_consumer_reads_a_topic_the_restarted_broker_lost_and_got_again_from_its_start():
    with own_stack(kafka=True) as stack:
        bootstrap = stack.endpoints.kafka_bootstrap
        assert bootstrap is not None
        topic = f"lost-{uuid4().hex[:8]}"
        publish(bootstrap, topic, [b"old-0", b"old-1", b"old-2"])
        settings = Settings(kafka_bootstrap=bootstrap)
        consumer = group_consumer(settings, f"{topic}-group", "restart-test")
        consumer.subscribe([topic])
        try:
            read_until(consumer, {b"old-0", b"old-1", b"old-2"})
            partition = TopicPartition(topic, 0)
            consumer.pause(partition)  # no fetch until the new topic is past the old offset

            stack.stop_server("kafka")
            stack.start_server("kafka")
            publish(bootstrap, topic, [b"new-0", b"new-1", b"new-2", b"new-3", b"new-4"])
            consumer.resume(partition)

            new = {b"new-0", b"new-1", b"new-2", b"new-3", b"new-4"}
            assert new <= set(read_until(consumer, new))  # 0-2 too, not only 3 and 4
        finally:
            consumer.close()


def test_a_consumer_that_keeps_fetching_across_the_restart_rewinds_the_topic_created_again():
    with own_stack(kafka=True) as stack:
        bootstrap = stack.endpoints.kafka_bootstrap
        assert bootstrap is not None
        topic = f"again-{uuid4().hex[:8]}"
        publish(bootstrap, topic, [f"old-{i}".encode() for i in range(4)])
        consumer = group_consumer(Settings(kafka_bootstrap=bootstrap), f"{topic}-g", "again")
        consumer.subscribe([topic])
        incarnations = TopicIncarnations()
        values: list[bytes] = []

        def read(wanted: set[bytes]) -> bool:
            """As the notifier polls: rewind a recreated topic, drop what a poll fetched from
            it at the old offset."""
            incarnations.rewind_recreated(consumer)
            polled = consumer.poll(timeout_ms=300)
            recreated = incarnations.rewind_recreated(consumer)
            values.extend(
                r.value for tp, rs in polled.items() if tp.topic not in recreated for r in rs
            )
            if polled:
                with suppress(CommitFailedError):
                    consumer.commit()
            return wanted <= set(values)

        try:
            old = {f"old-{i}".encode() for i in range(4)}
            wait_until(lambda: read(old), 60, "the old records")
            assert incarnations.recreated(consumer) == set()  # seen once, unchanged

            stack.stop_server("kafka")
            stack.start_server("kafka")
            new = {f"new-{i}".encode() for i in range(6)}
            publish(bootstrap, topic, sorted(new))
            wait_until(lambda: read(new), 60, "every record of the topic created again")
            assert new <= set(values)  # from its start: new-0 to new-3 were not skipped
        finally:
            consumer.close()
