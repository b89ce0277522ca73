"""What the fault tests share: servers of their own (so an outage disturbs no other test),
`ticketblitz` processes to kill, answers checked as problem+json, and e-mail and Kafka counts."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any
from uuid import UUID

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import SecretStr

from infra.event_store import PostgresEventStore
from infra.settings import Settings
from process_managers.integration_events import BOOKING_TYPES, IntegrationEvent, event_id_for
from process_managers.notifier import SUBJECTS
from tests.e2e.saga_support import SagaSystem, book, wait_until
from ticketblitz.embedded import SERVERS, EmbeddedStack, Mailbox

CLI = str(Path(sys.executable).parent / "ticketblitz")
PROBLEM_JSON = "application/problem+json"


@contextmanager
def own_stack(**servers: bool) -> Iterator[EmbeddedStack]:
    """Embedded servers of this test's own (``own_stack(postgres=True)``), in a short
    temporary directory; every server not named is off. Stopped and removed afterwards."""
    assert set(servers) <= set(SERVERS), servers
    data_dir = Path(tempfile.mkdtemp(prefix="tbf-", dir="/tmp"))
    stack = EmbeddedStack(data_dir, **{name: servers.get(name, False) for name in SERVERS})
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- randomness ---------------------------------------------------------------------------------


def seeded_random() -> random.Random:
    """The random moments of a fault test, from a seed it prints (shown with a failure):
    ``TICKETBLITZ_TEST_SEED=<seed>`` replays the same choices."""
    given = os.environ.get("TICKETBLITZ_TEST_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(1_000_000_000)
    print(f"random seed {seed} (replay with TICKETBLITZ_TEST_SEED={seed})")
    return random.Random(seed)


# --- problem+json ------------------------------------------------------------------------------


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error answer; fails unless it is a well-formed one that
    leaks nothing (RFC 9457: type, title, status; no stack trace, no internal error)."""
    where = f"{response.request.method} {response.request.url.path}"
    assert response.headers.get("content-type", "").startswith(PROBLEM_JSON), (where, response)
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code and body["title"], (where, body)
    assert body["type"].startswith("https://ticketblitz.dev/problems/"), (where, body)
    assert body["type"] != "https://ticketblitz.dev/problems/internal-error", (where, body)
    assert "Traceback" not in response.text and 'File "' not in response.text, (where, body)
    return body


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 that tells the client to come back: problem+json with Retry-After."""
    assert response.status_code == 503, response.text
    problem_of(response)
    assert int(response.headers["retry-after"]) >= 1, response.headers


# --- `ticketblitz` processes -------------------------------------------------------------------


def env_for(settings: Settings) -> dict[str, str]:
    """TICKETBLITZ_* variables that make a `ticketblitz` process use exactly these settings
    (every field that differs from its default; none inherited from this process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETBLITZ_")}
    defaults = Settings.model_construct()
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None or value == getattr(defaults, name, None):
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"TICKETBLITZ_{name.upper()}"] = str(value)
    return env


class CliProcess:
    """One `ticketblitz ...` command in a subprocess, its output appended to a log file."""

    def __init__(self, args: list[str], settings: Settings, log_path: Path) -> None:
        self.args = args
        self._env = env_for(settings)
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def name(self) -> str:
        return " ".join(self.args)

    def start(self) -> None:
        with open(self._log_path, "ab") as log:
            self.process = subprocess.Popen(
                [CLI, *self.args], env=self._env, stdout=log, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.kills += 1

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it does not end within 20 s); quiet if it is not running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def run_cli(args: list[str], settings: Settings, timeout: float = 120) -> CompletedProcess[str]:
    """Run `ticketblitz ARGS...` to its end (as an operator would), output captured."""
    return subprocess.run(
        [CLI, *args], env=env_for(settings), capture_output=True, text=True, timeout=timeout
    )


# --- e-mails and Kafka -------------------------------------------------------------------------


def emails_by_event(mailbox: Mailbox, event_ids: Iterable[str] | None = None) -> Counter[str]:
    """How many e-mails the mailbox holds per event id (only these ids, if given)."""
    counts = Counter(str(m["X-TicketBlitz-Event-Id"]) for m in mailbox.messages())
    if event_ids is None:
        return counts
    wanted = set(event_ids)
    return Counter({e: n for e, n in counts.items() if e in wanted})


def topic_records(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record on `topic` now, read by assignment until nothing more comes (Tansu's
    answer to ListOffsets, behind `KafkaConsumer.end_offsets`, is not a partition's end when
    the partition holds batches of several records)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: list[ConsumerRecord] = []
        deadline = time.monotonic() + 120
        while batches := consumer.poll(timeout_ms=500):
            found += [record for records in batches.values() for record in records]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after 120 s reading {topic}: records kept coming "
                    f"({len(found)} so far)"
                )
        return found
    finally:
        consumer.close()


def published_events(bootstrap: str, topic: str) -> Counter[UUID]:
    """How many times each integration event is on `topic`."""
    records = topic_records(bootstrap, topic)
    return Counter(IntegrationEvent.from_json(r.value).event_id for r in records)


def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Records on `topic` the consumer group has not committed yet (None: the topic is empty
    or the group committed nothing yet for a partition that holds records)."""
    ends: dict[TopicPartition, int] = {}
    for record in topic_records(bootstrap, topic):
        ends[TopicPartition(record.topic, record.partition)] = record.offset + 1
    if not ends:
        return None
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:  # committed() asks the group coordinator; this consumer never joins the group
        lag = 0
        for partition, end in ends.items():
            done = consumer.committed(partition)
            if done is None:
                return None
            lag += end - done
        return lag
    finally:
        consumer.close()


# --- the booking saga ---------------------------------------------------------------------


def book_paid(system: SagaSystem, show_id: str, methods: list[str]) -> list[str]:
    """One booking per payment method, each by a new customer, paid at once; their ids."""
    return [
        book(system.api, system.api.new_customer(), show_id, quantity=1, payment_method=method)[
            "booking_id"
        ]
        for method in methods
    ]


def wait_final(system: SagaSystem, booking_ids: Iterable[str], timeout: float = 30) -> None:
    for booking_id in booking_ids:
        system.wait_for_final(booking_id, timeout)


def emails_due(store: PostgresEventStore, booking_ids: Iterable[str]) -> set[str]:
    """The ids of the events of these bookings that the notifier e-mails about."""
    return {
        str(event_id_for(event.originator_id, event.originator_version))
        for booking_id in booking_ids
        for event in store.app.events.get(UUID(booking_id))
        if BOOKING_TYPES[type(event).__qualname__] in SUBJECTS
    }


def wait_for_emails(mailbox: Mailbox, event_ids: set[str], timeout: float = 60) -> None:
    wait_until(
        lambda: set(emails_by_event(mailbox, event_ids)) == event_ids,
        timeout,
        f"{len(event_ids)} e-mails",
    )


def wait_until_consumed(system: SagaSystem, bootstrap: str, timeout: float = 60) -> None:
    """Until the notifier committed every record of the bookings topic: from then on,
    nothing more reaches it (whatever has not been e-mailed yet never will be)."""
    group = system.settings.kafka_notifier_group
    wait_until(
        lambda: group_lag(bootstrap, group, system.bookings_topic) == 0,
        timeout,
        "the notifier to commit every record",
    )


def saw_log(caplog: pytest.LogCaptureFixture, logger: str, text: str) -> bool:
    return any(r.name == logger and text in r.getMessage() for r in caplog.records)
