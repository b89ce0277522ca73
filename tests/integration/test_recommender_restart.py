"""Issue 17: every restart of `ticketblitz up` logged alarming recommender warnings ("the
history of ... changed"): the embedded broker keeps its topics in memory, comes back empty,
and `up` feeds it the whole log again. That is an ordinary restart: it is said at INFO, and
the partition is read again from its start. A topic whose history really changed (the records
at the offsets already applied are other events) still warns.

A broker of our own (Tansu, in memory) stopped and started, and a new consumer as a restarted
`up` starts it; the real relay re-feeds the broker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from infra.kafka import KafkaPublisher
from process_managers.integration_events import topic_names
from process_managers.kafka_relay import rewind
from tests.e2e.saga_support import wait_until
from tests.integration.test_kafka_relay import Broker
from tests.integration.test_recommender_projection import RecSystem, SystemFactory, new_system

pytestmark = pytest.mark.integration

__all__ = ["new_system"]  # the fixture, used here

CHANGED = "history of"


def on_broker_restarted(
    new_system: SystemFactory, stack_dir: Path, caplog: pytest.LogCaptureFixture, refeed: Any
) -> tuple[RecSystem, list[logging.LogRecord]]:
    """A consumer caught up with two shows and a booking; the broker restarts empty; a new
    consumer starts, then `refeed(system)` feeds the broker again, and the consumer reads
    until caught up. The system, and the recommender's log records from the restart on."""
    broker = Broker(stack_dir / f"rec-restart-{id(caplog)}.log")
    broker.start()
    try:
        system = new_system(broker.bootstrap, kafka_partitions=1)
        topics = list(topic_names(system.settings.kafka_topic_prefix).values())
        one_partition = KafkaPublisher(broker.bootstrap, topics, partitions=1)
        one_partition.ensure_topics()
        shows = [system.schedule("jazz", i) for i in range(2)]
        system.confirm(shows[0], shows[1])
        system.publish()
        system.consumer().catch_up()

        broker.stop()  # `ticketblitz up` stopped, and started again: an empty broker
        broker.start()
        one_partition.ensure_topics()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="recommender"):
            consumer = system.consumer()  # the new process's
            consumer.setup()
            with consumer.session() as session:

                def shorter() -> bool:
                    session.step(200)
                    return "shorter than before" in caplog.text

                wait_until(shorter, 60, "the consumer to notice the emptied broker")
                refeed(system)  # the relay, a little later than the consumer

                def caught_up() -> bool:
                    session.step(200)
                    return session.caught_up()

                wait_until(caught_up, 60, "the consumer to read the topics again")
            records = [r for r in caplog.records if r.name.startswith("recommender")]
        return system, records
    finally:
        broker.stop()


def whole_log(system: RecSystem) -> None:
    rewind(system.store, 0, name=system.relay.name)
    system.publish()


def test_a_broker_fed_the_same_log_again_is_an_ordinary_restart(
    new_system: SystemFactory, stack_dir: Path, caplog: pytest.LogCaptureFixture
):
    """As `ticketblitz up` does at every start: the whole log published again."""
    system, records = on_broker_restarted(new_system, stack_dir, caplog, whole_log)

    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    assert any("shorter than before" in r.getMessage() for r in records)  # said, at INFO
    assert len(system.rows("show_vectors")["show_vectors"]) == 2


def test_a_broker_whose_records_are_other_events_still_warns(
    new_system: SystemFactory, stack_dir: Path, caplog: pytest.LogCaptureFixture
):
    """The broker came back empty and got a new show's events first, then the whole log: the
    offsets applied before now hold other events."""

    def other_history(system: RecSystem) -> None:
        system.schedule("jazz", 2)
        system.publish()  # only the new show's events: at the offsets of the old ones
        whole_log(system)

    system, records = on_broker_restarted(new_system, stack_dir, caplog, other_history)

    warned = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert any(CHANGED in message for message in warned), warned
    assert len(system.rows("show_vectors")["show_vectors"]) == 3
