"""The recommender's projection fed from Kafka: shows scheduled and bookings confirmed in the
event store, published by the real relay to a real broker, consumed by the recommender's
consumer into PostgreSQL with pgvector. Each test has a database and topics of its own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from commands.models import CancelShow, OpenSale, ScheduleShow
from domain.booking import Booking
from http_shell.container import Container
from infra.kafka import KafkaPublisher, KafkaUnavailableError
from infra.log_follower import LogFollower
from infra.settings import Settings
from process_managers.integration_events import SHOWS, IntegrationEvent, topic_names
from process_managers.kafka_relay import rewind
from recommender.embedder import Embedder, OfflineEmbedder
from recommender.offsets import OffsetsMovedError
from recommender.projection import FOLLOWER, SCHEMA
from recommender.runner import RecommenderConsumer, RecommenderRunner, recommender_status
from tests.e2e.conftest import settings_for_tests
from tests.e2e.rec_catalog import BrokenEmbedder, confirm_booking, confirmed_booking, show_bodies
from tests.e2e.saga_support import wait_until
from tests.integration.audit_support import new_database
from tests.integration.test_kafka_relay import Broker, relay_for
from ticketblitz.bootstrap import bootstrap
from ticketblitz.cli import app
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

# What the projection holds, table by table (ordered, so that two states compare equal).
TABLES = {
    "show_vectors": "show_id, title, description, category, venue, starts_at, on_sale,"
    " position, embedding::text, model, updated_at",
    "pending_embeddings": "show_id, title, description, category, venue, attempts",
    "bookings": "booking_id, customer_id, show_id, confirmed, position",
    "customer_shows": "customer_id, show_id",
    "show_sales": "show_id, confirmed",
    "consumer_offsets": "topic, partition, next_offset, last_digest",
    "skipped_records": "topic, partition, record_offset, event_id, position, error",
}


class TitlesFirstEmbedder(OfflineEmbedder):
    """Another offline model: the same hashing, with titles weighing most."""

    model_name = "offline-hash-titles"
    WEIGHTS = {
        "title": (6.0, 1.5),
        "category": (1.0, 0.2),
        "description": (1.0, 0.2),
        "venue": (0.3, 0.0),
    }


@dataclass
class RecSystem:
    """A database and topics of their own; the relay is run by hand (`publish`)."""

    container: Container
    settings: Settings
    relay: LogFollower

    @property
    def store(self) -> Any:
        return self.container.store

    def schedule(self, genre: str, index: int, on_sale: bool = True) -> UUID:
        body = [b for b in show_bodies() if b["category"] == genre][index]
        show_id = self.container.shows.schedule_show(ScheduleShow.model_validate(body)).show_id
        if on_sale:
            self.container.shows.open_sale(OpenSale(show_id=show_id)).result(10)
        return show_id

    def confirm(self, customer_id: UUID, show_id: UUID) -> UUID:
        booking = confirmed_booking(customer_id, show_id)
        self.store.save(booking)
        return booking.id

    def cancel(self, booking_id: UUID) -> None:
        booking = self.store.get(booking_id, Booking)
        booking.cancel("changed my mind")
        self.store.save(booking)

    def publish(self) -> int:
        """The relay publishes everything new; a broker that just came back may refuse the
        first attempt (the producer reconnects)."""

        def published() -> bool:
            try:
                self.relay.catch_up()
            except KafkaUnavailableError:
                return False
            return True

        wait_until(published, 30, "the relay to publish")
        return int(self.store.head_position())

    def send_raw(self, show_id: UUID, *values: bytes) -> None:
        """Records on the shows topic that the relay did not write, keyed like the show's."""
        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        topic = topic_names(self.settings.kafka_topic_prefix)[SHOWS]
        for value in values:
            producer.send(topic, key=str(show_id).encode(), value=value)
        producer.flush()
        producer.close()

    def consumer(self, embedder: Embedder | None = None, **options: Any) -> RecommenderConsumer:
        return RecommenderConsumer(
            self.store, self.settings, embedder or OfflineEmbedder(), **options
        )

    def rows(self, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
        with self.store.connection() as conn:
            return {
                table: conn.execute(
                    f"SELECT {TABLES[table]} FROM {SCHEMA}.{table} ORDER BY {TABLES[table]}"
                ).fetchall()
                for table in tables or TABLES
            }

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.store.connection() as conn:
            return conn.execute(query, params).fetchall()

    def watermark(self) -> int:
        return int(
            self.sql("SELECT position FROM follower_positions WHERE name = %s", FOLLOWER)[0][0]
        )

    def records_on_topics(self) -> int:
        status = recommender_status(self.store, self.settings, OfflineEmbedder())
        return sum(p.highwater or 0 for p in status.partitions)

    def cli(self, *args: str) -> Any:
        env = {
            "TICKETBLITZ_DATABASE_URL": self.settings.database_url,
            "TICKETBLITZ_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "TICKETBLITZ_KAFKA_TOPIC_PREFIX": self.settings.kafka_topic_prefix,
            "TICKETBLITZ_DATA_DIR": str(self.settings.data_dir),
        }
        return CliRunner().invoke(app, ["recommender", *args], env=env)


SystemFactory = Callable[..., RecSystem]


@pytest.fixture
def new_system(endpoints: StackEndpoints, tmp_path: Path) -> Iterator[SystemFactory]:
    """Builds systems on the session's servers, or on another broker; closes them after."""
    assert endpoints.database_url is not None
    server = endpoints.database_url

    with ExitStack() as made:

        def make(bootstrap_servers: str | None = None, **overrides: Any) -> RecSystem:
            kafka = bootstrap_servers or endpoints.kafka_bootstrap
            assert kafka is not None
            prefix = f"r{uuid4().hex[:8]}"
            settings = settings_for_tests(
                endpoints,
                tmp_path,
                database_url=made.enter_context(new_database(server)),
                kafka_bootstrap=kafka,
                kafka_topic_prefix=prefix,
                **overrides,
            )
            container = made.enter_context(closing(bootstrap(settings)))
            return RecSystem(container, settings, relay_for(container, kafka, prefix))

        yield make


@pytest.fixture
def system(new_system: SystemFactory) -> RecSystem:
    return new_system()


def test_a_consumer_stopped_midway_resumes_at_its_stored_offsets(system: RecSystem):
    """Given three shows and four confirmed bookings on the topics; when a consumer applies
    one poll of at most three records and stops, and another one catches up; then the second
    starts at the offsets the first stored with its rows: every record is applied once, and
    the counts of confirmed bookings are exact."""
    shows = [system.schedule("jazz", i) for i in range(3)]
    fans = [uuid4(), uuid4()]
    for fan in fans:
        for show in shows[:2]:
            system.confirm(fan, show)
    head = system.publish()

    with system.consumer(max_records=3).session() as first:
        applied_first = 0
        for _ in range(100):  # each step polls up to 1 s: a deadline of about 100 s
            applied_first = first.step(1000)
            if applied_first:
                break
        assert applied_first, "the consumer applied nothing in 100 steps"
    stored = system.sql(f"SELECT sum(next_offset) FROM {SCHEMA}.consumer_offsets")[0][0]
    applied_second = system.consumer().catch_up()

    assert 0 < applied_first <= 3 and stored == applied_first
    assert applied_first + applied_second == system.records_on_topics() == 3 * 2 + 4 * 4
    assert system.rows("show_sales")["show_sales"] == sorted([(shows[0], 2), (shows[1], 2)])
    assert set(system.rows("customer_shows")["customer_shows"]) == {
        (fan, show) for fan in fans for show in shows[:2]
    }
    assert system.watermark() == head


def test_records_delivered_again_change_nothing(system: RecSystem):
    """Given a consumer caught up with a show, a confirmed booking and one cancelled after
    confirmation; when the relay publishes everything again (at least once delivery) and a
    consumer reads the copies one by one; then no row changes at any step (an old state, such
    as the cancelled booking's "confirmed", never comes back)."""
    show = system.schedule("rock", 0)
    kept = system.confirm(uuid4(), show)
    system.cancel(system.confirm(uuid4(), show))
    system.publish()
    system.consumer().catch_up()
    before = system.rows()
    del before["consumer_offsets"]

    rewind(system.store, 0, name=system.relay.name)  # `ticketblitz relay refeed --from 0`
    system.publish()
    copies = system.records_on_topics() // 2
    read = 0
    with system.consumer(max_records=1).session() as again:
        while read < copies:
            read += again.step(1000)
            now = system.rows()
            del now["consumer_offsets"]
            assert now == before, f"after {read} of {copies} copies"

    assert before["show_sales"] == [(show, 1)]
    assert [row[0] for row in before["bookings"] if row[3]] == [kept]


def test_a_consumer_whose_offsets_moved_under_it_writes_nothing(system: RecSystem):
    """Given two consumers that found the same stored offsets; when one of them applies the
    records, then the other's batch is refused and rolled back, and its next session starts
    from the offsets the first one stored."""
    system.schedule("jazz", 0)
    system.publish()
    stale = system.consumer()

    with stale.session() as session:
        system.consumer().catch_up()
        before = system.rows()
        with pytest.raises(OffsetsMovedError):
            for _ in range(50):
                session.step(1000)

    assert system.rows() == before
    assert stale.catch_up() == 0


def test_a_malformed_record_is_skipped_and_its_partition_goes_on(system: RecSystem):
    """Given a record that is not JSON and one whose payload lacks the show's fields, in the
    partition of a show, before that show's events; when the consumer reads them; then both
    are recorded as skipped and the show after them is applied."""
    system.schedule("comedy", 0)
    system.publish()  # the topics exist
    show = system.schedule("comedy", 1)
    broken = IntegrationEvent(
        event_id=uuid4(),
        type="show.scheduled",
        occurred_at=datetime.now(UTC),
        position=10**9,
        show_id=show,
        payload={"title": "no category, no venue"},
    )
    system.send_raw(show, b"\x00 not json", broken.to_json())
    head = system.publish()

    system.consumer().catch_up()

    skipped = system.rows("skipped_records")["skipped_records"]
    assert [(row[3], row[4]) for row in skipped] == [(None, None), (broken.event_id, 10**9)]
    assert "Invalid JSON" in skipped[0][5]
    assert "category" in skipped[1][5]
    assert show in {row[0] for row in system.rows("show_vectors")["show_vectors"]}
    assert system.watermark() == head


def test_a_show_the_embedder_fails_on_waits_and_is_embedded_later(system: RecSystem):
    """Survival mode. Given the embedding model is down; when the consumer reads a new show;
    then the batch commits (offsets, row, watermark) with the show waiting in
    rec.pending_embeddings with a backoff; once due and the model back, it is embedded."""
    show = system.schedule("ballet", 0)
    head = system.publish()

    system.consumer(BrokenEmbedder()).catch_up()

    assert system.sql(f"SELECT embedding IS NULL, model, on_sale FROM {SCHEMA}.show_vectors") == [
        (True, None, True)
    ]
    assert system.sql(
        f"SELECT show_id, attempts, last_error, next_attempt_at > now()"
        f" FROM {SCHEMA}.pending_embeddings"
    ) == [(show, 1, "the model is down", True)]
    assert system.watermark() == head
    assert (
        system.records_on_topics()
        == system.sql(f"SELECT sum(next_offset) FROM {SCHEMA}.consumer_offsets")[0][0]
    )

    system.sql(f"UPDATE {SCHEMA}.pending_embeddings SET next_attempt_at = now() RETURNING show_id")
    system.consumer().catch_up()

    assert system.sql(f"SELECT model FROM {SCHEMA}.show_vectors") == [("offline-hash-v1",)]
    assert system.rows("pending_embeddings")["pending_embeddings"] == []


def test_rebuild_reads_the_topics_again_into_the_same_rows(system: RecSystem):
    """Given a projection caught up with shows (one cancelled), bookings (one cancelled after
    confirmation) and a skipped record; when `ticketblitz recommender rebuild` runs; then the
    fresh tables swapped in hold the same rows, offsets and position in the log."""
    shows = [system.schedule(genre, 0) for genre in ("jazz", "rock", "electronic")]
    system.container.shows.cancel_show(CancelShow(show_id=shows[2])).result(10)
    fan = uuid4()
    system.confirm(fan, shows[0])
    system.cancel(system.confirm(fan, shows[1]))
    system.publish()
    system.send_raw(shows[0], b"not an integration event")
    head = system.publish()
    system.consumer().catch_up()
    before = system.rows()
    assert len(before["skipped_records"]) == 1

    result = system.cli("rebuild")

    assert result.exit_code == 0, result.output
    assert f"{system.records_on_topics()} records read again" in result.output
    assert system.rows() == before
    assert system.watermark() == head


def test_a_running_consumer_goes_on_from_the_rebuilt_tables(system: RecSystem):
    """Given the recommender running (as `ticketblitz up` runs it); when a rebuild swaps
    fresh tables in under it and a show is published after; then it applies that show to the
    new tables, and its offsets account for every record once."""
    first = system.schedule("electronic", 0)
    head = system.publish()
    runner = RecommenderRunner(system.store, system.settings).start()
    try:
        wait_until(lambda: system.watermark() == head, 30, "the running consumer")

        result = system.cli("rebuild")
        second = system.schedule("electronic", 1)
        head = system.publish()

        assert result.exit_code == 0, result.output
        wait_until(lambda: system.watermark() == head, 30, "the consumer after the rebuild")
    finally:
        runner.stop()
    assert {row[0] for row in system.rows("show_vectors")["show_vectors"]} == {first, second}
    offsets = system.sql(f"SELECT sum(next_offset) FROM {SCHEMA}.consumer_offsets")[0][0]
    assert offsets == system.records_on_topics()


def test_a_model_change_re_embeds_every_show(system: RecSystem, caplog: pytest.LogCaptureFixture):
    """Given shows embedded by offline-hash-v1; when a consumer starts with another model
    configured, then it re-embeds them all (and says so); when `ticketblitz recommender
    reembed` runs with offline-hash-v1 configured, every row is back to that model, without
    reading Kafka."""
    shows = [system.schedule("classical", i) for i in range(3)]
    system.publish()
    system.consumer().catch_up()
    original = system.rows("show_vectors")["show_vectors"]

    with caplog.at_level(logging.INFO, logger="recommender.runner"):
        system.consumer(TitlesFirstEmbedder()).catch_up()

    assert "re-embedding 3 shows with offline-hash-titles" in caplog.text
    assert system.sql(f"SELECT DISTINCT model FROM {SCHEMA}.show_vectors") == [
        ("offline-hash-titles",)
    ]
    vectors = system.sql(f"SELECT show_id, embedding::text FROM {SCHEMA}.show_vectors")
    assert {v for _, v in vectors}.isdisjoint({row[8] for row in original})

    result = system.cli("reembed")

    assert result.exit_code == 0, result.output
    assert "3 shows embedded with offline-hash-v1 (3 queued); 0 pending" in result.output
    assert system.rows("show_vectors")["show_vectors"] == original
    assert sorted(s for (s,) in system.sql(f"SELECT show_id FROM {SCHEMA}.show_vectors")) == sorted(
        shows
    )


def test_status_reports_offsets_lag_pending_and_models(system: RecSystem):
    """Given a show read and another published since; `ticketblitz recommender status` shows
    each partition's offset and lag (the second show's two records), the pending embeddings,
    skipped records and the shows per model."""
    system.schedule("jazz", 0)
    system.publish()
    system.consumer().catch_up()
    system.schedule("jazz", 1)
    system.publish()

    result = system.cli("status")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    partitions = [
        line.split() for line in lines if line.startswith(system.settings.kafka_topic_prefix)
    ]
    assert len(partitions) == 2 * system.settings.kafka_partitions
    assert sum(int(p[4]) for p in partitions) == 2  # scheduled + sale opened, not read yet
    assert "pending embeddings: 0 (0 due now)" in lines
    assert "skipped records: 0" in lines
    assert "shows by model (configured: offline-hash-v1): offline-hash-v1: 1" in lines


def test_cli_errors_are_one_line(system: RecSystem):
    """Given no Kafka configured; `ticketblitz recommender rebuild` fails with one line on
    stderr and exit status 2."""
    env = {
        "TICKETBLITZ_DATABASE_URL": system.settings.database_url,
        "TICKETBLITZ_DATA_DIR": str(system.settings.data_dir),
    }
    result = CliRunner().invoke(app, ["recommender", "rebuild"], env=env)

    assert result.exit_code == 2
    assert result.stderr.startswith("ticketblitz: error: TICKETBLITZ_KAFKA_BOOTSTRAP is not set")
    assert result.stderr.strip().count("\n") == 0


def test_a_broker_that_lost_its_topics_is_read_again_from_the_start(
    new_system: SystemFactory, stack_dir: Path
):
    """Given a consumer caught up with two shows on a broker that keeps topics in memory; when
    the broker restarts empty and the relay publishes a third show (fewer records than the
    consumer had read); then the consumer notices and reads the partition from its start, and
    after a re-feed of the whole log every show is there once."""
    broker = Broker(stack_dir / "rec-broker.log")
    broker.start()
    try:
        system = new_system(broker.bootstrap, kafka_partitions=1)
        topics = list(topic_names(system.settings.kafka_topic_prefix).values())
        one_partition = KafkaPublisher(broker.bootstrap, topics, partitions=1)
        one_partition.ensure_topics()
        first = [system.schedule("rock", i) for i in range(2)]
        system.publish()
        system.consumer().catch_up()

        broker.stop()
        broker.start()
        one_partition.ensure_topics()
        third = system.schedule("rock", 2)
        head = system.publish()
        system.consumer().catch_up()

        assert third in {row[0] for row in system.rows("show_vectors")["show_vectors"]}
        assert system.watermark() == head

        rewind(system.store, 0, name=system.relay.name)
        system.publish()
        system.consumer().catch_up()

        assert sorted(r[0] for r in system.rows("show_vectors")["show_vectors"]) == sorted(
            [*first, third]
        )
    finally:
        broker.stop()


def test_the_read_your_writes_position_waits_for_unpublished_events(system: RecSystem):
    """Given a booking confirmed after the consumer caught up, not yet published; then the
    recommender's position stays before it; once published and read, it reaches the head."""
    show = system.schedule("jazz", 0)
    system.publish()
    system.consumer().catch_up()
    before = system.watermark()

    position = confirm_booking(system.store, uuid4(), show)
    system.consumer().catch_up()
    assert before <= system.watermark() < position

    system.publish()
    system.consumer().catch_up()
    assert system.watermark() == position
