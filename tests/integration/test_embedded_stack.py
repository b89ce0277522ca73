"""The embedded stack starts real servers that answer real clients, and stops them again."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
import redis
import stripe
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from tests.e2e.saga_support import wait_until
from ticketblitz.embedded import EmbeddedStack, Mailbox, StackEndpoints
from ticketblitz.stack.guardian import Guardian
from ticketblitz.stack.processes import free_port, pid_alive
from ticketblitz.stack.smtp import SmtpServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tb-", dir="/tmp"))  # short: pgserver's unix socket
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(stack_root: Path) -> Iterator[EmbeddedStack]:
    embedded = EmbeddedStack(stack_root / "all")
    started = time.monotonic()
    embedded.start()
    print(f"embedded stack of five servers up in {time.monotonic() - started:.2f} s")
    yield embedded
    embedded.stop()


@pytest.fixture(scope="module")
def endpoints(stack: EmbeddedStack) -> StackEndpoints:
    return stack.endpoints


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_every_endpoint_is_on_the_loopback_interface(endpoints: StackEndpoints):
    assert endpoints.database_url is not None and endpoints.database_url.startswith("postgresql:")
    assert endpoints.kafka_bootstrap is not None
    assert endpoints.kafka_bootstrap.startswith("127.0.0.1:")
    assert endpoints.redis_url is not None and endpoints.redis_url.startswith("redis://127.0.0.1:")
    assert endpoints.redis_url.endswith("/0")
    assert endpoints.stripe_api_base is not None
    assert endpoints.stripe_api_base.startswith("http://127.0.0.1:")
    assert endpoints.smtp_host == "127.0.0.1" and endpoints.smtp_port is not None


def test_postgres_answers_and_has_pgvector(endpoints: StackEndpoints):
    assert endpoints.database_url is not None
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        table = f"items_{uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {table} (name text PRIMARY KEY, embedding vector(3))")
        conn.execute(
            f"INSERT INTO {table} VALUES"
            " ('near', '[1,1,1]'), ('far', '[9,9,9]'), ('mid', '[4,4,4]')"
        )
        rows = conn.execute(
            f"SELECT name, embedding <-> '[0,0,0]' FROM {table} ORDER BY embedding <-> '[0,0,0]'"
        ).fetchall()
    assert [name for name, _ in rows] == ["near", "mid", "far"]
    assert rows[0][1] == pytest.approx(3**0.5)


def test_kafka_produces_and_consumes_a_message(endpoints: StackEndpoints):
    assert endpoints.kafka_bootstrap is not None
    topic = f"t-{uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)
    try:
        sent = producer.send(topic, key=b"show-1", value=b"SeatsHeld").get(timeout=10)
    finally:
        producer.close()

    consumer = KafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, sent.partition)
        consumer.assign([partition])  # no group join: no rebalance delay
        consumer.seek(partition, sent.offset)
        received: list = []
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(records)
    finally:
        consumer.close()
    assert [(r.key, r.value) for r in received] == [(b"show-1", b"SeatsHeld")]


def test_valkey_sets_and_gets(endpoints: StackEndpoints):
    assert endpoints.redis_url is not None
    client = redis.Redis.from_url(endpoints.redis_url)
    try:
        assert client.set("embedded:key", "value", ex=60)
        assert client.get("embedded:key") == b"value"
    finally:
        client.close()


def test_stripe_emulator_confirms_a_payment_intent(endpoints: StackEndpoints):
    assert endpoints.stripe_api_base is not None
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": endpoints.stripe_api_base})
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert intent.status == "succeeded"
    assert client.v1.payment_intents.retrieve(intent.id).amount == 1000


def test_smtp_mail_lands_in_the_mailbox(stack: EmbeddedStack, endpoints: StackEndpoints):
    assert endpoints.smtp_host is not None and endpoints.smtp_port is not None
    subject = f"Your tickets {uuid4().hex[:8]}"
    message = EmailMessage()
    message["From"] = "tickets@ticketblitz.dev"
    message["To"] = "fan@example.com"
    message["Bcc"] = "audit@ticketblitz.dev"
    message["Subject"] = subject
    message.set_content("Row 7, seats 12-13. Enjoy the show!")
    # local_hostname: smtplib would otherwise call socket.getfqdn(), slow without DNS.
    with smtplib.SMTP(
        endpoints.smtp_host, endpoints.smtp_port, local_hostname="localhost", timeout=10
    ) as smtp:
        smtp.send_message(message)

    got = stack.mailbox.wait_for(lambda m: m["Subject"] == subject, timeout=5)
    assert got["To"] == "fan@example.com"
    assert "audit@ticketblitz.dev" in got["X-RcptTo"]
    assert got["X-MailFrom"] == "tickets@ticketblitz.dev"
    body = got.get_body(preferencelist=("plain",))
    assert body is not None and "Row 7, seats 12-13" in body.get_content()

    # Another process would read the same files through its own Mailbox.
    other = Mailbox(stack.data_dir / "mail")
    assert subject in [m["Subject"] for m in other.messages()]
    with pytest.raises(TimeoutError):
        other.wait_for(lambda m: m["Subject"] == "never sent", timeout=0.2)
    other.clear()
    assert stack.mailbox.messages() == []


def _postgres_only(data_dir: Path) -> EmbeddedStack:
    return EmbeddedStack(data_dir, kafka=False, redis=False, stripe=False, smtp=False)


def test_postgres_rows_survive_a_stop_and_a_start(stack_root: Path):
    stack = EmbeddedStack(
        stack_root / "restart", kafka=False, redis=False, stripe=False, smtp=False
    )
    first = stack.start()
    assert first.database_url is not None
    assert first.kafka_bootstrap is None and first.redis_url is None
    assert first.stripe_api_base is None and first.smtp_port is None
    with psycopg.connect(first.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bookings (id int PRIMARY KEY, seat text)")
        conn.execute("INSERT INTO bookings VALUES (1, 'A1'), (2, 'A2')")
    stack.stop()
    stack.stop()  # idempotent
    assert not (stack_root / "restart" / "pg" / "postmaster.pid").exists()  # really stopped

    with EmbeddedStack(
        stack_root / "restart", kafka=False, redis=False, stripe=False, smtp=False
    ) as again:
        assert again.endpoints.database_url is not None
        with psycopg.connect(again.endpoints.database_url) as conn:
            rows = conn.execute("SELECT id, seat FROM bookings ORDER BY id").fetchall()
    assert rows == [(1, "A1"), (2, "A2")]


def test_stop_closes_every_port(stack_root: Path):
    stack = EmbeddedStack(stack_root / "ports", postgres=False)
    found = stack.start()
    assert found.kafka_bootstrap is not None and found.redis_url is not None
    assert found.stripe_api_base is not None and found.smtp_port is not None
    ports = [
        int(found.kafka_bootstrap.rsplit(":", 1)[1]),
        int(found.redis_url.rsplit(":", 1)[1].split("/")[0]),
        int(found.stripe_api_base.rsplit(":", 1)[1]),
        found.smtp_port,
    ]
    assert all(_port_open("127.0.0.1", p) for p in ports)
    stack.stop()
    assert not any(_port_open("127.0.0.1", p) for p in ports)
    with pytest.raises(RuntimeError):
        _ = stack.endpoints


def test_a_server_that_fails_to_start_is_named_with_its_log(
    stack_root: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CALF_TANSU_BIN", "/bin/false")  # a "broker" that exits at once
    stack = EmbeddedStack(
        stack_root / "broken", postgres=False, redis=False, stripe=False, smtp=False, timeout=5
    )
    with pytest.raises(RuntimeError, match=r"embedded kafka exited .*kafka\.log"):
        stack.start()
    stack.stop()


# ---- the helper programs, run as the modules they are ------------------------------------


def _send_mail(host: str, port: int, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "tickets@ticketblitz.dev"
    message["To"] = "fan@example.com"
    message["Subject"] = subject
    message.set_content("Row 3, seat 9.")
    with smtplib.SMTP(host, port, local_hostname="localhost", timeout=10) as smtp:
        smtp.send_message(message)


def test_the_smtp_server_alone_stores_each_mail_as_a_file(stack_root: Path):
    mailbox = Mailbox(stack_root / "smtp-alone")
    server = SmtpServer(mailbox, timeout=10)
    server.launch()
    try:
        assert server.running and server.port is not None
        _send_mail("127.0.0.1", server.port, "Your seat")
    finally:
        server.stop()
    assert not server.running
    files = [p for p in mailbox.directory.iterdir() if p.name.endswith(".eml")]
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert raw.startswith(b"X-MailFrom: tickets@ticketblitz.dev\r\nX-RcptTo: fan@example.com")
    assert b"Subject: Your seat" in raw
    assert not [p for p in mailbox.directory.iterdir() if p.name.endswith(".tmp")]


def _start_stripe_emulator(port: int, state: Path, log: Path) -> subprocess.Popen[bytes]:
    """The program as the stack runs it, from another folder: only the install finds it."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ticketblitz.stack.stripe_emulator", str(port), str(state)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )

    def answers() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(answers, 30, f"the Stripe emulator on port {port}")
    return process


def _stripe(port: int) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": f"http://127.0.0.1:{port}"})


def test_the_stripe_emulator_program_keeps_its_objects_across_a_restart(stack_root: Path):
    folder = stack_root / "stripe-alone"
    folder.mkdir()
    state, log, port = folder / "state.pickle", folder / "stripe.log", free_port()
    first = _start_stripe_emulator(port, state, log)
    try:
        customer = _stripe(port).v1.customers.create(params={"email": "fan@example.com"})
    finally:
        first.send_signal(signal.SIGTERM)  # the last changes are written when it stops
        first.wait(15)
    with open(state, "rb") as stored:
        assert f"customer:{customer.id}" in pickle.load(stored)
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []

    again = _start_stripe_emulator(port, state, log)
    try:
        found = _stripe(port).v1.customers.retrieve(customer.id)
    finally:
        again.terminate()
        again.wait(15)
    assert found.email == "fan@example.com"
    assert "/tmp/localstripe.pickle" not in log.read_text()


def test_the_guardian_program_stops_what_it_watches_when_its_pipe_closes(stack_root: Path):
    watched = subprocess.Popen(["sleep", "300"])
    spared = subprocess.Popen(["sleep", "300"])
    try:
        guardian = Guardian(stack_root / "guardian.log")
        guardian.watch(watched.pid, signal.SIGTERM)
        guardian.watch(spared.pid)
        guardian.unwatch(spared.pid)
        guardian.close()  # what the end of our process would do
        assert watched.wait(10) == -signal.SIGTERM
        assert spared.poll() is None
    finally:
        for process in (watched, spared):
            process.kill()
            process.wait()


def test_the_guardian_program_outlives_a_killed_stack(stack_root: Path):
    """SIGKILL the process of a stack: its guardian still stops the stack's servers."""
    data_dir = stack_root / "killed"
    owner = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.embedded_owner", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parents[2],  # the repository: where `tests` is found
    )
    try:
        assert owner.stdout is not None
        pids = [int(pid) for pid in owner.stdout.readline().split()]
        assert pids and all(pid_alive(pid) for pid in pids)
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    wait_until(lambda: not any(pid_alive(p) for p in pids), 30, f"servers {pids} to stop")
