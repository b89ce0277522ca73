"""The recommender's Kafka consumer: integration events into the `rec` tables, exactly once.

- **Offsets in PostgreSQL.** The consumer assigns itself every partition of `{prefix}.shows.v1`
  and `{prefix}.bookings.v1` (no consumer group, nothing committed to Kafka) and seeks to the
  offsets stored in `rec.consumer_offsets`. Each poll's records are applied in one transaction
  that also moves those offsets, after checking that they are still where this consumer found
  them (compare and set: a rebuild or a second consumer that moved them makes it start over from
  the stored offsets). A crash therefore never applies a batch twice nor skips one, and the
  projection is idempotent anyway (projection.py; the offsets: offsets.py).
- **A topic whose history changed** (a broker that keeps topics in memory restarted, as the
  embedded one does; `ticketblitz up` then re-feeds it from the log): when a session starts,
  the record before each stored offset is read again and compared with the digest stored with
  that offset, and on every poll a partition whose high watermark is below the position is
  noticed. Such a partition is read again from its beginning, which changes nothing that was
  applied. Records are compared by their integration event's id (the relay seals people's data
  afresh at each publication, so the bytes differ). A partition shorter than the position is
  an ordinary restart (said at INFO); when its last applied record is read again it is
  compared, and only a different event there (or at the stored offset when the session
  starts) is warned about: the history really changed. Not detected: a broker that restarted
  empty *and* was re-fed beyond the stored offset while this consumer was connected and did
  not poll; run `ticketblitz recommender rebuild`.
- **Malformed records** are logged, recorded in `rec.skipped_records` and skipped; a batch that
  PostgreSQL refuses is applied again record by record, and the refused record is skipped.
- **After each poll**, the due pending embeddings are embedded (survival mode: when the embedder
  fails they stay pending, with a backoff, and consuming goes on); once none is due, the
  read-your-writes watermark moves (embedding_queue.py, watermark.py).
- **Kafka or PostgreSQL down**: the session ends and a new one starts after a backoff (0.5 s,
  doubling up to 30 s), from the stored offsets.
- One consumer per database works at a time (a PostgreSQL advisory lock); others stand by.

Also here: `rebuild` (re-read the topics from the beginning into fresh tables, then swap them
in), `reembed` (re-embed the shows embedded by another model than the configured one, through
the pending queue) and `recommender_status`, behind `ticketblitz recommender ...`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from infra.event_store import PostgresEventStore
from infra.kafka import KafkaPublisher
from infra.settings import Settings
from process_managers.integration_events import BOOKINGS, SHOWS, topic_names
from projections.locks import try_advisory_lock
from recommender.embedder import Embedder, embedder_from_env
from recommender.embedding_queue import BATCH, Embedded, EmbeddingQueue, shows_per_model
from recommender.offsets import Offset, OffsetsMovedError, load_offsets, save_offsets
from recommender.projection import (
    FOLLOWER,
    SCHEMA,
    RecommenderProjection,
    TableStatus,
    create_tables,
    ensure_schema,
    set_watermark,
    table_status,
)
from recommender.records import Record, parse
from recommender.watermark import advance_watermark

log = logging.getLogger(__name__)

CLIENT_ID = "ticketblitz-recommender"
REBUILD_SCHEMA = "rec_rebuild"
RETIRED_SCHEMA = "rec_retired"
RETRY_FIRST, RETRY_CAP = 0.5, 30.0


class TopicsChangedError(ConnectionError):
    """The topics are missing or their partitions changed: start a new session."""


class RebuildBusyError(RuntimeError):
    """Another rebuild of the recommender is running."""


def topics_for(settings: Settings) -> list[str]:
    names = topic_names(settings.kafka_topic_prefix)
    return [names[SHOWS], names[BOOKINGS]]


def digest(value: bytes | None) -> bytes:
    """What identifies a record: its integration event's id (the same when the relay publishes
    the event again, though people's data is sealed afresh each time), else its bytes."""
    identity = value or b""
    with suppress(ValueError, TypeError, AttributeError):
        identity = f"event:{json.loads(identity)['event_id']}".encode()
    return hashlib.blake2b(identity, digest_size=16).digest()


def same_record(value: bytes | None, expected: bytes) -> bool:
    """Whether a record is the one `expected` digests (also as digested before records were
    identified by their event: offsets stored by an older version)."""
    return expected in (digest(value), hashlib.blake2b(value or b"", digest_size=16).digest())


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"recommender:{name}".encode(), digest_size=8).digest(), "big", signed=True
    )


@contextmanager
def advisory_lock(store: PostgresEventStore, name: str) -> Iterator[bool]:
    """A session advisory lock on `name` while the block runs; yields whether it was taken."""
    with store.connection() as conn, try_advisory_lock(conn, _lock_key(name)) as taken:
        yield taken


def new_consumer(settings: Settings) -> Any:
    """A KafkaConsumer outside any group: partitions are assigned, offsets are ours."""
    return KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # an offset gone from the topic: its first record
        metadata_max_age_ms=30_000,  # new partitions are noticed within 30 s
    )


def partitions_of(consumer: Any, topics: list[str]) -> list[Any]:
    found = []
    for topic in topics:
        ids = consumer.partitions_for_topic(topic)
        if not ids:
            raise TopicsChangedError(f"Kafka topic {topic} does not exist (yet)")
        found += [TopicPartition(topic, p) for p in sorted(ids)]
    return found


@dataclass
class _Position:
    stored: int  # the next offset, as stored in PostgreSQL
    next: int  # the next offset to read
    anchor: tuple[int, bytes] | None = None  # (offset, digest) of the record before `stored`
    # (offset, digest) of the last record applied, while the partition is read again after
    # the broker held fewer records: compared when it is read again (did history change?).
    verify: tuple[int, bytes] | None = None
    last: tuple[int, bytes] | None = None  # (offset, digest) of the last record applied


class _Session:
    """One KafkaConsumer, assigned every partition and positioned at the stored offsets."""

    def __init__(
        self,
        store: PostgresEventStore,
        projection: RecommenderProjection,
        consumer: Any,
        partitions: list[Any],
        max_records: int,
    ) -> None:
        self.store = store
        self.projection = projection
        self.consumer = consumer
        self.topics = sorted({tp.topic for tp in partitions})
        self.max_records = max_records
        with store.connection() as conn:
            wanted = [(tp.topic, tp.partition) for tp in partitions]
            stored = load_offsets(conn, projection.schema, wanted)
        self.positions: dict[Any, _Position] = {}
        for tp in partitions:
            offset = stored[(tp.topic, tp.partition)]
            position = _Position(offset.next_offset, offset.next_offset)
            if offset.next_offset > 0 and offset.last_digest is not None:
                position.anchor = position.last = (offset.next_offset - 1, offset.last_digest)
                position.next = offset.next_offset - 1  # read it again, to compare
            self.positions[tp] = position
        consumer.assign(partitions)
        for tp, position in self.positions.items():
            consumer.seek(tp, position.next)

    def step(self, timeout_ms: int) -> int:
        """Poll once and apply what came; returns how many records were applied."""
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        batch = {tp: fresh for tp, records in polled.items() if (fresh := self._fresh(tp, records))}
        self._check_highwaters()
        if batch:
            self._write(batch)
        elif not polled and self._partitions_changed():
            raise TopicsChangedError(f"the partitions of {', '.join(self.topics)} changed")
        return sum(len(records) for records in batch.values())

    def caught_up(self) -> bool:
        """Every partition read up to the high watermark of a fetch made in this session."""
        for tp, position in self.positions.items():
            highwater = self.consumer.highwater(tp)
            if position.anchor is not None or highwater is None or position.next < highwater:
                return False
        return True

    def _fresh(self, tp: Any, records: list[Any]) -> list[Any]:
        position = self.positions[tp]
        if position.anchor is not None:
            first = records[0]
            offset, expected = position.anchor
            if first.offset != offset or not same_record(first.value, expected):
                self._rewind(tp, f"the record at offset {position.anchor[0]} is not the one read")
                return []
            position.anchor = None
            position.next = first.offset + 1
            records = records[1:]
        if position.verify is not None:
            self._verify(tp, position, records)
        if records and records[0].offset > position.next:
            log.warning(
                "recommender: %s[%s] offsets %s to %s are no longer in the topic (retention?)",
                tp.topic,
                tp.partition,
                position.next,
                records[0].offset - 1,
            )
        return records

    def _check_highwaters(self) -> None:
        for tp, position in self.positions.items():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            if position.anchor is not None and highwater <= position.anchor[0]:
                self._reread(tp, f"it holds {highwater} records, {position.stored} were read")
            elif position.anchor is None and highwater < position.next:
                self._reread(tp, f"it holds {highwater} records, {position.next} were read")

    def _reread(self, tp: Any, why: str) -> None:
        """The broker holds fewer records than were read: it restarted (the embedded one keeps
        topics in memory, and `up` feeds it the log again), an ordinary restart. Read the
        partition again from its start, quietly; whether its history is the same is known
        when the last record applied is read again (`_verify`)."""
        log.info(
            "recommender: %s[%s] is shorter than before (%s; a broker restart?): reading it"
            " again from the start",
            tp.topic,
            tp.partition,
            why,
        )
        position = self.positions[tp]
        position.verify = position.verify or position.last
        self._seek_start(tp)

    def _verify(self, tp: Any, position: _Position, records: list[Any]) -> None:
        """Read again after a shorter broker: the record where the last applied one was must
        be the same event, else the history changed (warned: not an ordinary restart)."""
        assert position.verify is not None
        offset, expected = position.verify
        found = next((r for r in records if r.offset == offset), None)
        if found is None and (not records or records[-1].offset < offset):
            return  # not there yet
        position.verify = None
        if found is None or not same_record(found.value, expected):
            log.warning(
                "recommender: the history of %s[%s] changed: the record at offset %s is not"
                " the one applied before (records are applied again; run `ticketblitz"
                " recommender rebuild` if the recommendations look wrong)",
                tp.topic,
                tp.partition,
                offset,
            )

    def _rewind(self, tp: Any, why: str) -> None:
        log.warning(
            "recommender: the history of %s[%s] changed (%s): reading it again from the start",
            tp.topic,
            tp.partition,
            why,
        )
        self._seek_start(tp)

    def _seek_start(self, tp: Any) -> None:
        self.consumer.seek(tp, 0)
        self.positions[tp].anchor = None
        self.positions[tp].next = 0

    def _partitions_changed(self) -> bool:
        assigned = {tp for tp in self.positions}
        with suppress(TopicsChangedError):
            return set(partitions_of(self.consumer, self.topics)) != assigned
        return True

    def _write(self, batch: dict[Any, list[Any]]) -> None:
        changes = [
            parse(Record(tp.topic, tp.partition, r.offset, r.value))
            for tp, records in batch.items()
            for r in records
        ]
        expected = {(tp.topic, tp.partition): self.positions[tp].stored for tp in batch}
        reached = {
            (tp.topic, tp.partition): Offset(records[-1].offset + 1, digest(records[-1].value))
            for tp, records in batch.items()
        }
        try:
            with self.store.connection() as conn, conn.transaction():
                save_offsets(conn, self.projection.schema, expected, reached)
                self.projection.apply(conn, changes)
        except (psycopg.DataError, psycopg.IntegrityError) as error:
            log.warning("recommender: PostgreSQL refused a batch (%s): record by record", error)
            with self.store.connection() as conn, conn.transaction():
                save_offsets(conn, self.projection.schema, expected, reached)
                self.projection.apply_one_by_one(conn, changes)
        for tp, records in batch.items():
            last = records[-1]
            position = self.positions[tp]
            position.stored = position.next = last.offset + 1
            position.last = (last.offset, digest(last.value))


class RecommenderConsumer:
    """Applies the integration events on Kafka to the recommender's tables (module docstring).

    `run` follows the topics until stopped; `catch_up` reads up to the end of the topics once
    (a rebuild, tests)."""

    name = FOLLOWER

    def __init__(
        self,
        store: PostgresEventStore,
        settings: Settings,
        embedder: Embedder,
        schema: str = SCHEMA,
        max_records: int = 500,
    ) -> None:
        if settings.kafka_bootstrap is None:
            raise ValueError("the recommender consumes Kafka: TICKETBLITZ_KAFKA_BOOTSTRAP is unset")
        self.store = store
        self.settings = settings
        self.projection = RecommenderProjection(schema)
        self.queue = EmbeddingQueue(embedder, schema)
        self.topics = topics_for(settings)
        self.poll_ms = int(settings.projection_poll_seconds * 1000)
        self.max_records = max_records
        self._models_checked = False

    @property
    def schema(self) -> str:
        return self.projection.schema

    def setup(self) -> None:
        """Create the tables if missing; shows embedded by another model than the configured
        one are queued for re-embedding (once per consumer object)."""
        with self.store.connection() as conn:
            create_tables(conn, self.schema)
            if self._models_checked:
                return
            with conn.transaction():
                model = self.queue.embedder.model_name
                models = shows_per_model(conn, self.schema).items()
                others = {m: n for m, n in models if m is not None and m != model}
                queued = self.queue.queue_other_models(conn) if others else 0
        self._models_checked = True
        if queued:
            log.info(
                "recommender: re-embedding %s shows with %s (embedded by: %s)",
                queued,
                model,
                ", ".join(f"{m} ({n})" for m, n in others.items()),
            )

    def run(self, stop: threading.Event) -> None:
        """Follow the topics until `stop` is set; survives Kafka and PostgreSQL outages."""
        backoff = RETRY_FIRST
        while not stop.is_set():
            try:
                with advisory_lock(self.store, self.schema) as locked:
                    if not locked:
                        stop.wait(1.0)  # another consumer has it: stand by
                        continue
                    self.setup()
                    with self.session() as session:
                        more = False
                        while not stop.is_set():
                            session.step(0 if more else self.poll_ms)
                            more = self.after_poll().count == BATCH
                            backoff = RETRY_FIRST
            except (KafkaError, psycopg.Error, OSError, OffsetsMovedError) as error:
                log.warning("recommender: %s; retrying in %.1fs", error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_CAP)

    def catch_up(self, timeout: float = 60.0) -> int:
        """Read every partition up to its end, embed what is due, move the watermark;
        returns how many records were applied."""
        self.setup()
        deadline = time.monotonic() + timeout
        applied = 0
        with self.session() as session:
            while not session.caught_up():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the recommender did not reach the end of {self.topics}")
                applied += session.step(self.poll_ms)
        self.queue.embed_all(self.store)
        self.after_poll()
        return applied

    def after_poll(self) -> Embedded:
        """Embed due pending shows; once none is due (or the embedder failed), move the
        watermark (tables of `rec` only)."""
        embedded = self.queue.embed_due(self.store)
        if self.schema == SCHEMA and embedded.count < BATCH:
            with self.store.connection() as conn, conn.transaction():
                advance_watermark(conn, self.schema)
        return embedded

    @contextmanager
    def session(self) -> Iterator[_Session]:
        consumer = new_consumer(self.settings)
        try:
            if not set(self.topics) <= consumer.topics():  # as the relay creates them
                KafkaPublisher(
                    str(self.settings.kafka_bootstrap),
                    self.topics,
                    self.settings.kafka_partitions,
                    self.settings.kafka_publish_timeout_seconds,
                    client_id=CLIENT_ID,
                ).ensure_topics()
            partitions = partitions_of(consumer, self.topics)
            yield _Session(self.store, self.projection, consumer, partitions, self.max_records)
        finally:
            consumer.close()


class RecommenderRunner:
    """The consumer on a thread of its own, beside the projection runners (`ticketblitz up`)."""

    def __init__(
        self, store: PostgresEventStore, settings: Settings, embedder: Embedder | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.embedder = embedder or embedder_from_env()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RecommenderRunner:
        """Start consuming (unless this PostgreSQL has no pgvector or no Kafka is configured:
        then recommendations keep what the tables hold)."""
        if not ensure_schema(self.store):
            return self
        if self.settings.kafka_bootstrap is None:
            log.warning("no Kafka configured: the recommender's tables are not kept up to date")
            return self
        consumer = RecommenderConsumer(self.store, self.settings, self.embedder)
        self._thread = threading.Thread(
            target=consumer.run, args=(self._stop,), name="recommender", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


# ---- operations: `ticketblitz recommender rebuild | reembed | status` ---------------------


@dataclass(frozen=True)
class RebuildReport:
    records: int
    shows: int
    pending: int
    watermark: int
    seconds: float


def rebuild(
    store: PostgresEventStore, settings: Settings, embedder: Embedder, timeout: float = 600.0
) -> RebuildReport:
    """Read the topics from their beginning into fresh tables (`rec_rebuild`), embed the
    shows, then swap the tables in for `rec` in one transaction. A running consumer notices
    (its offsets moved) and continues from the new tables' offsets. An interrupted rebuild
    starts over. The topics must still hold every record (retention: README)."""
    started = time.monotonic()
    with advisory_lock(store, "rebuild") as locked:
        if not locked:
            raise RebuildBusyError("another recommender rebuild is running")
        with store.connection() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE")
        builder = RecommenderConsumer(store, settings, embedder, schema=REBUILD_SCHEMA)
        records = builder.catch_up(timeout)
        with store.connection() as conn:
            create_tables(conn)
            with conn.transaction():
                conn.execute(f"LOCK TABLE {SCHEMA}.consumer_offsets IN ACCESS EXCLUSIVE MODE")
                conn.execute(f"ALTER SCHEMA {SCHEMA} RENAME TO {RETIRED_SCHEMA}")
                conn.execute(f"ALTER SCHEMA {REBUILD_SCHEMA} RENAME TO {SCHEMA}")
                conn.execute(f"DROP SCHEMA {RETIRED_SCHEMA} CASCADE")
                set_watermark(conn, 0)
                watermark = advance_watermark(conn, SCHEMA)
                status = table_status(conn)
    return RebuildReport(
        records=records,
        shows=sum(status.models.values()),
        pending=status.pending,
        watermark=watermark,
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True)
class ReembedReport:
    queued: int
    embedded: int
    pending: int
    error: str | None


def reembed(store: PostgresEventStore, embedder: Embedder) -> ReembedReport:
    """Queue every show whose row's model is not `embedder`'s and embed the queue (no Kafka
    needed). If the embedder fails, what is left stays pending for the running consumer."""
    queue = EmbeddingQueue(embedder, SCHEMA)
    with store.connection() as conn:
        create_tables(conn)
        with conn.transaction():
            queued = queue.queue_other_models(conn)
    done = queue.embed_all(store)
    with store.connection() as conn:
        pending = table_status(conn).pending
    return ReembedReport(queued, done.count, pending, done.error)


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    offset: int
    highwater: int | None  # None: Kafka did not answer

    @property
    def lag(self) -> int | None:
        return None if self.highwater is None else max(self.highwater - self.offset, 0)


@dataclass(frozen=True)
class RecommenderStatus:
    model: str
    head: int
    tables: TableStatus
    partitions: list[PartitionStatus]
    kafka_error: str | None


def recommender_status(
    store: PostgresEventStore, settings: Settings, embedder: Embedder, timeout: float = 5.0
) -> RecommenderStatus:
    """Offsets and lag per partition, the watermark, pending embeddings, shows per model."""
    with store.connection() as conn:
        create_tables(conn)
        tables = table_status(conn)
    highwaters: dict[tuple[str, int], int] = {}
    error: str | None = None
    if settings.kafka_bootstrap is None:
        error = "TICKETBLITZ_KAFKA_BOOTSTRAP is not set"
    else:
        try:
            highwaters = _highwaters(settings, tables.offsets, timeout)
        except (KafkaError, OSError) as failure:
            error = f"Kafka at {settings.kafka_bootstrap}: {failure!r}"
    keys = sorted(set(tables.offsets) | set(highwaters))
    return RecommenderStatus(
        model=embedder.model_name,
        head=store.head_position(),
        tables=tables,
        partitions=[
            PartitionStatus(t, p, tables.offsets.get((t, p), 0), highwaters.get((t, p)))
            for t, p in keys
        ],
        kafka_error=error,
    )


def _highwaters(
    settings: Settings, offsets: dict[tuple[str, int], int], timeout: float
) -> dict[tuple[str, int], int]:
    """Each partition's high watermark, from fetches (Tansu's ListOffsets answers are not
    reliable: it reports the last batch's first offset plus one)."""
    consumer = new_consumer(settings)
    try:
        partitions = partitions_of(consumer, topics_for(settings))
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, offsets.get((tp.topic, tp.partition), 0))
        deadline = time.monotonic() + timeout
        while any(consumer.highwater(tp) is None for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError("Kafka did not answer a fetch for every partition")
            consumer.poll(timeout_ms=200, max_records=1)
        return {(tp.topic, tp.partition): int(consumer.highwater(tp)) for tp in partitions}
    finally:
        consumer.close()
