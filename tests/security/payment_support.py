"""Helpers for the payment security tests: a system of its own whose Stripe webhook secret is
kept in its data directory (as `ticketblitz up` keeps it), and webhooks signed with it, the way
an attacker who learnt nothing but the webhook's URL cannot, and Stripe does."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from domain.booking import Booking
from infra.payments import register_emulator_webhook, webhook_secret_for
from tests.e2e.conftest import served
from tests.e2e.saga_support import (
    WEBHOOK_PATH,
    SagaSystem,
    new_database,
    saga_settings,
)
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints

WEBHOOK = WEBHOOK_PATH.removeprefix("/api/v1")


def start_payments_system(endpoints: StackEndpoints, data_dir: Path) -> SagaSystem:
    """App server, read models and workers on a fresh database; no webhook secret configured,
    so the one generated in `data_dir` signs (and the emulator is told it)."""
    assert endpoints.database_url is not None and endpoints.stripe_api_base is not None
    prefix = f"s{uuid4().hex[:8]}"
    settings = saga_settings(
        endpoints, data_dir, new_database(endpoints.database_url), prefix
    ).model_copy(update={"stripe_webhook_secret": None})
    exits = ExitStack()
    container = bootstrap(settings)
    exits.callback(container.close)
    if container.read_side is not None:
        container.read_side.start_runners()  # stopped by close()
    api = exits.enter_context(served(container))
    secret = webhook_secret_for(settings)
    assert (data_dir / "stripe-webhook-secret").read_text().strip() == secret
    register_emulator_webhook(endpoints.stripe_api_base, api.server_url + WEBHOOK_PATH, secret)
    system = SagaSystem(endpoints, settings, container, api, api, prefix, _exits=exits)
    system.start_workers()
    return system


@pytest.fixture(scope="module")
def payments_system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    """One per module: the emulator sends its webhooks to the last system that registered."""
    started = start_payments_system(endpoints, stack_dir / f"security-{uuid4().hex[:8]}")
    yield started
    started.close()


def signature_for(system: SagaSystem, payload: bytes, at: float | None = None) -> str:
    """A Stripe-Signature header for `payload`, signed at `at` (now) with the data directory's
    secret, the way Stripe signs its webhooks."""
    stamp = int(time.time() if at is None else at)
    secret = webhook_secret_for(system.settings).encode()
    mac = hmac.new(secret, f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def post_webhook(system: SagaSystem, payload: bytes, at: float | None = None) -> httpx.Response:
    headers = {
        "Stripe-Signature": signature_for(system, payload, at),
        "Content-Type": "application/json",
    }
    return system.api.http.post(WEBHOOK, content=payload, headers=headers)


def intent_event(kind: str, intent: dict[str, Any], event_id: str | None = None) -> bytes:
    """A Stripe event of `kind` (`payment_intent.succeeded`, ...) about `intent`."""
    event = {
        "id": event_id or f"evt_{uuid4().hex}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": {"object": "payment_intent", **intent}},
    }
    return json.dumps(event).encode()


def events_of(system: SagaSystem, booking_id: str | UUID) -> list[Any]:
    return list(system.store.app.events.get(UUID(str(booking_id))))


def kinds_of(system: SagaSystem, booking_id: str | UUID) -> list[str]:
    return [type(e).__name__ for e in events_of(system, booking_id)]


def metric(system: SagaSystem, sample: str) -> float:
    """The value of one sample (`name{labels}`) at the app's /metrics, 0 when absent."""
    text = httpx.get(system.api.base_url.removesuffix("/api/v1") + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def booking_of(system: SagaSystem, booking_id: str | UUID) -> Booking:
    return system.booking(booking_id)
