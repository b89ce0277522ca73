"""Helpers for the booking-saga tests: a system of its own (fresh database, Kafka topics and
consumer group, app servers and workers) on the session's real servers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import psycopg
import stripe
from kafka import KafkaConsumer, TopicPartition
from psycopg.conninfo import make_conninfo

from domain.booking import CANCELLED, CONFIRMED, EXPIRED, FINAL, REFUNDED, Booking
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from infra.payments import register_emulator_webhook
from infra.settings import Settings
from process_managers.integration_events import BOOKINGS, IntegrationEvent, topic_names
from tests.e2e.conftest import Api, served, settings_for_tests
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints
from ticketblitz.workers import Workers, build_workers

T = TypeVar("T")
WEBHOOK_SECRET = "whsec_tests_0123456789abcdef"
WEBHOOK_PATH = "/api/v1/payments/stripe/webhook"
VISA = "pm_card_visa"
DECLINED = "pm_card_chargeCustomerFail"  # localstripe and Stripe both decline it on charge


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def new_database(server_url: str) -> str:
    """A fresh database on the session's PostgreSQL: a log of our own, no one else's events."""
    name = f"saga_{uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(server_url, dbname=name)


def saga_settings(
    endpoints: StackEndpoints, data_dir: Path, database_url: str, prefix: str, **overrides: Any
) -> Settings:
    return settings_for_tests(
        endpoints,
        data_dir,
        database_url=database_url,
        kafka_bootstrap=endpoints.kafka_bootstrap,
        stripe_api_base=endpoints.stripe_api_base,
        stripe_webhook_secret=WEBHOOK_SECRET,
        smtp_host=endpoints.smtp_host,
        smtp_port=endpoints.smtp_port,
        kafka_topic_prefix=prefix,
        kafka_notifier_group=f"{prefix}-notifier",
        worker_poll_seconds=0.02,
        **overrides,
    )


def stripe_client(endpoints: StackEndpoints) -> stripe.StripeClient:
    assert endpoints.stripe_api_base is not None
    return stripe.StripeClient("sk_test_tests", base_addresses={"api": endpoints.stripe_api_base})


@dataclass
class SagaSystem:
    """One database, its app servers (normal and short holds) and, optionally, its workers."""

    endpoints: StackEndpoints
    settings: Settings
    container: Container
    api: Api
    short_hold_api: Api
    prefix: str
    workers: Workers | None = None
    _exits: ExitStack = field(default_factory=ExitStack)

    @property
    def store(self) -> Any:
        return self.container.store

    @property
    def bookings_topic(self) -> str:
        return topic_names(self.prefix)[BOOKINGS]

    def booking(self, booking_id: str | UUID) -> Booking:
        return self.store.get(UUID(str(booking_id)), Booking)

    def inventory(self, show_id: str) -> SeatInventory:
        return self.store.get(inventory_id_for(UUID(show_id)), SeatInventory)

    def wait_for_status(self, booking_id: str, statuses: Iterable[str], timeout: float) -> Booking:
        wanted = set(statuses)

        def reached() -> Booking | None:
            booking = self.booking(booking_id)
            return booking if booking.status in wanted else None

        return wait_until(reached, timeout, f"booking {booking_id} to be {'/'.join(wanted)}")

    def wait_for_final(self, booking_id: str, timeout: float) -> Booking:
        return self.wait_for_status(booking_id, FINAL, timeout)

    def start_workers(self) -> Workers:
        worker_container = bootstrap(self.settings)
        self._exits.callback(worker_container.close)
        self.workers = build_workers(worker_container).start()
        self._exits.callback(self.workers.stop)
        return self.workers

    def close(self) -> None:
        self._exits.close()


def start_system(
    endpoints: StackEndpoints, data_dir: Path, short_hold_minutes: float = 0.05
) -> SagaSystem:
    """App servers on a fresh database; Stripe's webhooks go to the normal one."""
    assert endpoints.database_url is not None and endpoints.stripe_api_base is not None
    database_url = new_database(endpoints.database_url)
    prefix = f"t{uuid4().hex[:8]}"
    exits = ExitStack()
    settings = saga_settings(endpoints, data_dir, database_url, prefix)
    short = settings.model_copy(update={"hold_minutes": short_hold_minutes})
    apis = []
    for each in (settings, short):
        container = bootstrap(each)
        exits.callback(container.close)
        apis.append((container, exits.enter_context(served(container))))
    (container, api), (_, short_api) = apis
    webhook_url = api.server_url + WEBHOOK_PATH
    register_emulator_webhook(endpoints.stripe_api_base, webhook_url, WEBHOOK_SECRET)
    return SagaSystem(endpoints, settings, container, api, short_api, prefix, _exits=exits)


@contextmanager
def running_system(
    endpoints: StackEndpoints, data_dir: Path, read_models: bool = False, **own: Any
) -> Iterator[SagaSystem]:
    """`start_system` with its workers running in this process, on the session's servers
    except those replaced by `own` endpoint fields (e.g. ``smtp_port=...`` for an SMTP server
    of the test's own); `read_models` also runs the read models' runners, as `up` does."""
    system = start_system(replace(endpoints, **own), data_dir)
    try:
        if read_models:
            assert system.container.read_side is not None
            system.container.read_side.start_runners()  # stopped by close()
        system.start_workers()
        yield system
    finally:
        system.close()


def book(api: Api, customer: dict[str, str], show_id: str, **request: Any) -> dict[str, Any]:
    body = {"show_id": show_id, **request}
    r = api.http.post("/bookings", json=body, headers={"Authorization": customer["Authorization"]})
    assert r.status_code == 201, r.text
    held: dict[str, Any] = r.json()
    return held


def show_starting(
    api: Api, starts_at: datetime, seats: int = 10, rows: int = 1, **changes: Any
) -> str:
    """A show on sale (section A: `rows` rows of `seats` seats), starting at `starts_at`;
    `changes` override the request's fields."""
    body = {
        "title": f"Saga night {uuid4().hex[:6]}",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": starts_at.isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [
            {
                "code": "A",
                "kind": "seated",
                "tier": "STD",
                "rows": [{"label": str(r), "seats": seats} for r in range(1, rows + 1)],
            }
        ],
        **changes,
    }
    return api.publish_show(body)


def open_organisers_show(
    api: Api,
    organizer: dict[str, str],
    title: str,
    seats: int = 10,
    ga_tier: str = "STD",
    **changes: Any,
) -> str:
    """A show the organiser schedules (so manages) and opens: `seats` seats in row 1 of A (STD,
    45.00), 50 general admission in GA (`ga_tier`: STD, or FLOOR at 30.00); `changes` override
    the request's fields."""
    tiers = [{"code": "STD", "price_cents": 4500}]
    if ga_tier != "STD":
        tiers.append({"code": ga_tier, "price_cents": 3000})
    body = {
        "title": f"{title} {uuid4().hex[:6]}",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": in_days(30).isoformat(),
        "currency": "EUR",
        "price_tiers": tiers,
        "sections": [
            {
                "code": "A",
                "kind": "seated",
                "tier": "STD",
                "rows": [{"label": "1", "seats": seats}],
            },
            {"code": "GA", "kind": "general", "tier": ga_tier, "capacity": 50},
        ],
        **changes,
    }
    auth = {"Authorization": organizer["Authorization"]}
    r = api.http.post("/shows", json=body, headers=auth)
    assert r.status_code == 201, r.text
    show_id: str = r.json()["show_id"]
    r = api.http.post(f"/shows/{show_id}/open-sale", headers=auth)
    assert r.status_code == 200, r.text
    return show_id


def in_days(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def pay_with_stripe(endpoints: StackEndpoints, intent_id: str | None) -> stripe.StripeClient:
    """Pay an intent with Stripe directly, as the customer's browser (Stripe.js) would."""
    assert intent_id is not None
    client = stripe_client(endpoints)
    client.v1.payment_intents.update(intent_id, params={"payment_method": VISA})
    client.v1.payment_intents.confirm(intent_id)
    return client


def intents_of(client: stripe.StripeClient, booking_ids: Iterable[str]) -> dict[str, list[Any]]:
    """The emulator's payment intents of these bookings (by the booking id in their metadata)."""
    wanted = {str(b) for b in booking_ids}
    found: dict[str, list[Any]] = {b: [] for b in wanted}
    for intent in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        booking_id = intent.to_dict()["metadata"].get("booking_id")
        if booking_id in wanted:
            found[booking_id].append(intent)
    return found


def refunds_of(client: stripe.StripeClient, intent_id: str | None) -> list[Any]:
    assert intent_id is not None
    return list(client.v1.refunds.list(params={"payment_intent": intent_id, "limit": 100}).data)


def signed(payload: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """A Stripe-Signature header, computed the way Stripe signs its webhooks."""
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def stripe_event_for(client: stripe.StripeClient, kind: str, intent_id: str | None) -> bytes:
    """The emulator's own event of `kind` for an intent, as the JSON it delivers."""

    def find() -> bytes | None:
        for event in client.v1.events.list(params={"type": kind, "limit": 100}).auto_paging_iter():
            if event.data.object.id == intent_id:
                return json.dumps(event.to_dict(), indent=2).encode()
        return None

    return wait_until(find, 10, f"a {kind} event for {intent_id}")


def topic_events(bootstrap: str | None, topic: str) -> Iterator[IntegrationEvent]:
    """Everything on a topic right now, read by assignment (no consumer-group delay)."""
    assert bootstrap is not None
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 60
        while any(consumer.position(p) < ends[p] for p in partitions):
            if time.monotonic() >= deadline:
                behind = {p.partition: (consumer.position(p), ends[p]) for p in partitions}
                raise AssertionError(
                    f"timed out after 60 s reading {topic} to its end: (position, end) {behind}"
                )
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    yield IntegrationEvent.from_json(record.value)
    finally:
        consumer.close()


# --- bookings of several kinds, and what each must end as ---

KINDS = ["visa"] * 5 + ["declined", "unpaid", "cancelled"]
# What each kind of booking must end as.
EXPECTED = {
    "visa": {CONFIRMED},
    "declined": {CANCELLED},
    "unpaid": {EXPIRED},
    "cancelled": {REFUNDED},  # cancelled once confirmed
}


@dataclass(frozen=True)
class Planned:
    kind: str
    api: str  # the unpaid ones go to the app with 3 s holds, so that they expire meanwhile
    body: dict[str, Any]
    auth: str


async def place_all(plan: list[Planned], status_of: Callable[[str], str]) -> list[str]:
    """Place every booking (16 at a time); cancel the `cancelled` ones once confirmed."""
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60) as http:

        async def one(booking: Planned) -> str:
            headers = {"Authorization": booking.auth}
            async with limit:
                r = await http.post(f"{booking.api}/bookings", json=booking.body, headers=headers)
                assert r.status_code == 201, r.text
            booking_id: str = r.json()["booking_id"]
            if booking.kind == "cancelled":
                deadline = time.monotonic() + 60
                while (status := status_of(booking_id)) != CONFIRMED:
                    if time.monotonic() >= deadline:
                        raise AssertionError(
                            f"timed out after 60 s waiting for booking {booking_id} to be "
                            f"confirmed before cancelling it (it is {status})"
                        )
                    await asyncio.sleep(0.05)
                cancel = f"{booking.api}/bookings/{booking_id}/cancel"
                r = await http.post(cancel, headers=headers)
                assert r.status_code == 202, r.text
            return booking_id

        return list(await asyncio.gather(*(one(p) for p in plan)))
