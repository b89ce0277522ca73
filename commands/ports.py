"""What command handlers, process managers and projections need from the outside world, as
small interfaces (adapters in infra/)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import Mapper
from psycopg_pool import ConnectionPool

A = TypeVar("A", bound=Aggregate)

Clock = Callable[[], datetime]


class EventStore(Protocol):
    def get(self, aggregate_id: UUID, kind: type[A]) -> A:
        """Load an aggregate; raise NotFoundError when the stream does not exist."""
        ...

    def exists(self, aggregate_id: UUID) -> bool: ...

    def version_of(self, aggregate_id: UUID) -> int | None:
        """The stream's last version, without loading it."""
        ...

    def save(self, *aggregates: Aggregate) -> int:
        """Append the aggregates' pending events in one transaction; return the global
        position of the last one (or the head position when nothing was pending).
        Raise VersionConflictError when an expected version is stale."""
        ...

    def head_position(self) -> int: ...

    def snapshot(self, aggregate: Aggregate) -> None:
        """Store the aggregate's current state so a cold load need not replay its history."""
        ...

    def show_lock(self, show_id: UUID) -> AbstractContextManager[None]:
        """Hold the cross-process lock that makes this process the show's only writer."""
        ...

    def catch_up(self, aggregate: A) -> A:
        """The aggregate with the events stored after its version applied (one read): a
        writer's cached copy after another process wrote, without a reload."""
        ...


class Connections(Protocol):
    """The event store's database, for the tables a process manager keeps beside the log."""

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled autocommit connection (use `conn.transaction()` for atomic work)."""
        ...


class EventLog(Connections, Protocol):
    """The global log of events, as log followers and read models read it."""

    def head_position(self) -> int: ...

    def events_after(
        self, position: int, limit: int
    ) -> list[tuple[int, DomainEventProtocol[UUID]]]:
        """Up to `limit` events after `position`, in log order, with their positions, decoded
        by the application (an event this code cannot decode raises)."""
        ...

    def mapper(self) -> Mapper[UUID]:
        """The application's mapper, for readers that decode raw rows (infra/decoding.py)."""
        ...

    def append_channel(self) -> str:
        """The channel every append transaction NOTIFYs: LISTEN on it to wake up early."""
        ...


class PoolRevival(Protocol):
    """Brings connection pools back together after the database was unreachable."""

    def check(self, conn: psycopg.Connection[Any]) -> None:
        """A pool's `check` of a connection before handing it out."""
        ...

    def add(self, pool: ConnectionPool[Any]) -> None: ...


class RevivingEventLog(EventLog, Protocol):
    """An event log whose pool revival other pools of the same database may join."""

    def pool_revival(self) -> PoolRevival: ...


class Aggregates(Protocol):
    def get(self, aggregate_id: UUID, kind: type[A]) -> A:
        """Load an aggregate; raise NotFoundError when the stream does not exist."""
        ...


class AggregateHistory(Aggregates, Protocol):
    """Aggregates as they are now, as they were, and the events that made them."""

    def get_as_of(self, aggregate_id: UUID, version: int) -> Aggregate:
        """The aggregate as it was right after its event `version`."""
        ...

    def history(self, aggregate_id: UUID) -> Iterator[DomainEventProtocol[UUID]]:
        """The aggregate's events, oldest first, read as they are iterated."""
        ...


class TaskStore(Connections, Aggregates, Protocol):
    """What a process manager that keeps task tables and loads aggregates uses."""


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool: ...


class BlobStore(Protocol):
    """Bytes under keys (poster images). Unreachable store: BlobStoreUnavailableError."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store (or overwrite) the bytes under `key`."""
        ...

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The bytes and their content type; None when nothing is stored under `key`."""
        ...

    def delete(self, key: str) -> None:
        """Forget `key` (nothing stored under it is no error)."""
        ...


PaymentOutcome = Literal["succeeded", "failed", "pending"]


@dataclass(frozen=True)
class PaymentResult:
    """What the payment provider's API says about a payment intent (never a webhook's body)."""

    booking_id: UUID  # the booking this result is recorded on
    intent_id: str
    outcome: PaymentOutcome
    amount_cents: int  # captured, as the provider reports it
    reason: str | None = None  # why it failed (the decline message)
    currency: str | None = None  # lower-case ISO code, as the provider reports it
    # The booking the intent's metadata names at the provider: a payment pays for a booking
    # only when this is that booking (None: the provider's answer did not say).
    named_booking_id: UUID | None = None


@dataclass(frozen=True)
class PaymentNotice:
    """A verified webhook about a payment intent. Only a hint: what it claims is never recorded;
    the intent it names is read from the provider's API first (`read_intent`)."""

    intent_id: str
    outcome: PaymentOutcome  # what the webhook claims
    booking_id: UUID  # the booking its body names


class PaymentGateway(Protocol):
    """The payment provider (Stripe). Every call is idempotent for a given booking: a follower
    may repeat it after a crash. Unreachable provider: PaymentGatewayUnavailableError."""

    def create_intent(self, booking_id: UUID, amount_cents: int, currency: str) -> str:
        """Create (or find again) the booking's payment intent; returns its id."""
        ...

    def confirm_intent(
        self, booking_id: UUID, intent_id: str, payment_method: str
    ) -> PaymentResult:
        """Charge the intent with a payment method; a decline is a result, not an error."""
        ...

    def intent_result(self, booking_id: UUID, intent_id: str) -> PaymentResult:
        """What became of an intent, asked again (a result may have been lost in a crash)."""
        ...

    def read_intent(self, intent_id: str) -> PaymentResult | None:
        """The intent as the provider's API has it, for the booking its metadata names; None
        when the provider does not know the intent or it names no booking."""
        ...

    def refund(self, booking_id: UUID, intent_id: str, amount_cents: int) -> str:
        """Refund a payment of the booking on this intent (once per intent); returns the
        refund id."""
        ...

    def parse_webhook(self, payload: bytes, signature: str | None) -> PaymentNotice | None:
        """Verify and read a webhook: a notice about a payment intent naming a booking, or None
        for events we do not follow. Raise InvalidWebhookError when the signature (or its
        timestamp) or the payload is not valid."""
        ...


@dataclass(frozen=True)
class SignedTicket:
    """What a verified ticket secret names (`kid`: the key that signed it)."""

    ticket_id: UUID
    show_id: UUID
    place: str  # the seat id, or the GA section's code
    kid: str


class TicketSigner(Protocol):
    """Signs ticket secrets (what a ticket's QR code holds) with the deployment's current key,
    and verifies them with any of its keys, current or rotated out (infra/ticket_signing.py).
    A scanner can verify offline with `public_keys()`."""

    def sign(self, ticket_id: UUID, show_id: UUID, place: str) -> str:
        """A compact, URL-safe secret naming the ticket, its show and its place;
        deterministic for a given key."""
        ...

    def verify(self, secret: str) -> SignedTicket:
        """What the secret names; InvalidTicketSecretError for anything forged, altered,
        truncated or signed by an unknown key."""
        ...

    def public_keys(self) -> dict[str, str]:
        """Every key that verifies: kid -> base64 (standard, padded) of the raw Ed25519
        public key."""
        ...

    def current_kid(self) -> str:
        """The key new secrets are signed with."""
        ...
