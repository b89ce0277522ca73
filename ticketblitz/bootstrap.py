"""The composition root: every entry point (APIs, workers, CLI, tests) builds its parts here."""

from __future__ import annotations

from datetime import timedelta

from commands.accounts import AccountCommands
from commands.bookings import BookingCommands
from commands.checkins import CheckinCommands
from commands.payments import PaymentCommands
from commands.ports import Clock
from commands.posters import PosterCommands
from commands.presale import PresaleCommands
from commands.seat_blocks import SeatBlockCommands
from commands.show_writer import ShowWriters
from commands.shows import ShowCommands
from commands.transfers import TransferCommands
from commands.waitlist import WaitlistCommands
from domain.inventory import LapsedHoldLimit
from http_shell.admission_gate import catalog_lookup
from http_shell.container import Container
from infra.blobs import blob_store_for
from infra.clock import utc_now
from infra.event_store import PostgresEventStore
from infra.images import process_poster
from infra.passwords import Argon2PasswordHasher
from infra.payments import gateway_for
from infra.personal_data import StoreEraser
from infra.read_cache import ReadCache
from infra.redis_guard import IdempotencyRecords, RateLimiter, connect_redis
from infra.settings import Settings
from infra.ticket_signing import Ed25519TicketSigner, TicketKeyError
from infra.tokens import TokenService, demo_secret
from infra.waiting_room import Admissions, CachedShows, WaitingRoom
from projections.read_side import ReadSide
from recommender.embedder import embedder_from_env
from recommender.pitch import PitchWriter
from recommender.projection import ensure_schema
from recommender.queries import (
    CACHE_PREFIX,
    BookingSuggestions,
    Recommender,
    RecommenderSettings,
)
from recommender.runner import RecommenderRunner


class ConfigurationError(Exception):
    """The settings do not allow starting (e.g. no JWT secret outside demo mode)."""


def lapsed_hold_limit(settings: Settings) -> LapsedHoldLimit | None:
    if settings.lapsed_hold_limit is None:
        return None
    window = timedelta(minutes=settings.lapsed_hold_window_minutes)
    return LapsedHoldLimit(settings.lapsed_hold_limit, window)


def jwt_secret_for(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.demo:
        return demo_secret(settings.data_dir)
    raise ConfigurationError(
        "TICKETBLITZ_JWT_SECRET is not set (required outside demo mode; 32+ characters)"
    )


def ticket_signer_for(settings: Settings) -> Ed25519TicketSigner:
    try:
        return Ed25519TicketSigner.from_settings(settings)
    except TicketKeyError as error:
        raise ConfigurationError(str(error)) from None


def bootstrap(settings: Settings, clock: Clock = utc_now) -> Container:
    """`clock` decides every time-bound rule of the commands (tests move it)."""
    if settings.database_url is None:
        raise ConfigurationError("TICKETBLITZ_DATABASE_URL is not set and no stack was started")
    tokens = TokenService(
        jwt_secret_for(settings),
        settings.jwt_ttl_seconds,
        settings.jwt_issuer,
        settings.jwt_audience,
    )
    store = PostgresEventStore(settings.database_url, pool_size=settings.db_pool_size)
    writers = ShowWriters(
        store,
        max_batch=settings.max_batch,
        forget_idle_seconds=settings.show_cache_idle_seconds,
    )
    hasher = Argon2PasswordHasher(settings.argon2_time_cost, settings.argon2_memory_kib)
    client = connect_redis(settings.redis_url) if settings.redis_url else None
    gateway = gateway_for(settings)
    container = Container(
        settings=settings,
        store=store,
        writers=writers,
        shows=ShowCommands(store, writers, clock=clock),
        seat_blocks=SeatBlockCommands(store, writers, clock=clock),
        bookings=BookingCommands(
            store,
            writers,
            clock=clock,
            hold_duration=timedelta(minutes=settings.hold_minutes),
            customer_ticket_limit=settings.customer_ticket_limit,
            lapsed_hold_limit=lapsed_hold_limit(settings),
        ),
        accounts=AccountCommands(store, hasher, StoreEraser(store.app.keys, store.connection)),
        tokens=tokens,
        idempotency=(
            IdempotencyRecords(client, settings.idempotency_ttl_seconds) if client else None
        ),
        rate_limiter=RateLimiter(client, enabled=settings.rate_limit_enabled),
        gateway=gateway,
        payments=PaymentCommands(
            store,
            writers,
            gateway,
            clock=clock,
            intent_wait_seconds=settings.payment_intent_wait_seconds,
            command_timeout_seconds=settings.command_timeout_seconds,
        ),
        redis=client,
    )
    container.blobs = blob_store_for(settings, store)
    container.ticket_signer = ticket_signer_for(settings)
    container.transfers = TransferCommands(
        store, writers, clock=clock, max_transfers=settings.max_ticket_transfers
    )
    container.checkins = CheckinCommands(store, writers, container.ticket_signer, clock)
    container.waitlist = WaitlistCommands(
        store,
        writers,
        clock=clock,
        offer_duration=timedelta(minutes=settings.waitlist_offer_minutes),
        customer_ticket_limit=settings.customer_ticket_limit,
    )
    container.presale = PresaleCommands(store, writers, clock=clock)
    secret = jwt_secret_for(settings)
    container.admissions = Admissions(
        secret,
        timedelta(minutes=settings.queue_admission_minutes),
        clock,
        CachedShows(catalog_lookup(container)),
    )
    container.waiting_room = WaitingRoom(client, secret, clock) if client is not None else None
    container.posters = PosterCommands(store, container.blobs, process_poster)
    container.read_side = ReadSide(
        settings,
        store,
        ReadCache(client, settings.read_cache_ttl_seconds),
        companion=lambda runner_store, s: RecommenderRunner(runner_store, s).start(),
    )
    container.read_side.setup()
    if ensure_schema(store):
        tuning = RecommenderSettings()
        container.recommender = Recommender(
            store,
            embedder_from_env().model_name,
            ReadCache(client, tuning.cache_ttl_seconds, prefix=CACHE_PREFIX),
            vector_timeout_ms=tuning.vector_timeout_ms,
            ef_search=tuning.ef_search,
        )
        container.pitch_writer = PitchWriter.from_env(tuning.pitch_timeout_seconds)
        container.mail_suggestions = BookingSuggestions(
            container.recommender, container.pitch_writer, tuning.mail_shows
        )
    if settings.admin_email and settings.admin_password:
        container.accounts.ensure_admin(
            settings.admin_email, settings.admin_password.get_secret_value()
        )
    return container
