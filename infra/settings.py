"""All configuration, from TICKETBLITZ_* environment variables (one typed Settings object)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETBLITZ_", extra="ignore")

    data_dir: Path = Path(".ticketblitz")
    demo: bool = False

    # External servers; whatever is left unset is started embedded (shared/STACK.md).
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    stripe_api_base: str | None = None
    stripe_api_key: SecretStr = SecretStr("sk_test_embedded")
    stripe_webhook_secret: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "tickets@ticketblitz.local"

    # Security.
    jwt_secret: SecretStr | None = None
    jwt_ttl_seconds: int = Field(default=3600, ge=60)
    # Every token says who issued it and for whom; tokens of another issuer or audience are 401.
    jwt_issuer: str = Field(default="ticketblitz", min_length=1)
    jwt_audience: str = Field(default="ticketblitz-api", min_length=1)
    admin_email: str | None = None
    admin_password: SecretStr | None = None
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19_456, ge=1024)

    # Business rules that operators tune.
    hold_minutes: float = Field(default=10.0, gt=0)
    # How long a waiting-list offer (seats held for a waiting fan) waits for its payment.
    waitlist_offer_minutes: float = Field(default=30.0, gt=0)
    # An operator-wide ceiling on the tickets one customer holds and buys per show, on top of
    # each show's own cap (`max_tickets_per_customer`, 10 unless set when scheduling it).
    customer_ticket_limit: int | None = Field(default=None, ge=1)
    # A customer whose holds on a show lapsed this many times within the window waits for a
    # new one (domain.inventory.LapsedHoldLimit); None lets holds lapse without limit.
    lapsed_hold_limit: int | None = Field(default=3, ge=1)
    lapsed_hold_window_minutes: float = Field(default=60.0, gt=0)
    # How often one ticket's place may change hands (POST /tickets/{id}/transfer).
    max_ticket_transfers: int = Field(default=3, ge=0, le=100)

    # Write path.
    max_batch: int = Field(default=500, ge=1)
    db_pool_size: int = Field(default=8, ge=1)
    # A show with no command for this long drops its cached inventory (reloaded on demand).
    show_cache_idle_seconds: float = Field(default=300.0, gt=0)
    command_timeout_seconds: float = Field(default=10.0, gt=0)

    # Redis-backed protections.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    rate_limit_enabled: bool = True
    rate_limit_login_per_minute: int = Field(default=20, ge=1)
    rate_limit_booking_per_minute: int = Field(default=120, ge=1)
    rate_limit_register_per_minute: int = Field(default=10, ge=1)
    # Waiting-room joins (POST /shows/{id}/queue) per client address; an admission to book
    # while a show's waiting room is on is valid this long after it is handed out.
    rate_limit_queue_join_per_minute: int = Field(default=60, ge=1)
    queue_admission_minutes: float = Field(default=10.0, gt=0, le=1440)
    # Login throttling (write_api/auth.py), on top of the per-address limit above: failed
    # logins per (e-mail, address) pair, in bursts of this many then one every 60/N s; and a
    # slower ceiling of failed logins per e-mail (bursts of N, then N an hour) that blocks
    # only addresses the account has not logged in from successfully within the last
    # `login_known_address_days`. Strangers guessing a password thus slow each other down,
    # never the owner at a known address.
    rate_limit_login_pair_per_minute: int = Field(default=5, ge=1)
    rate_limit_login_account_per_hour: int = Field(default=20, ge=1)
    login_known_address_days: float = Field(default=90.0, gt=0)
    # Proxies whose X-Forwarded-For is believed (http_shell/deps.py), IPs or CIDRs,
    # comma-separated in the environment. None by default: the client is the socket peer.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    # Payments and the booking saga (process_managers/).
    payment_intent_wait_seconds: float = Field(default=5.0, ge=0)
    saga_threads: int = Field(default=4, ge=1)
    worker_poll_seconds: float = Field(default=0.05, gt=0)

    # Kafka integration events (docs/INTEGRATION_EVENTS.md) and their consumers.
    kafka_topic_prefix: str = "ticketblitz"
    # Recent bookings and shows the relay keeps to build integration events (about 4 KiB each).
    relay_cached_aggregates: int = Field(default=10_000, ge=10)
    kafka_partitions: int = Field(default=3, ge=1)
    kafka_publish_timeout_seconds: float = Field(default=10.0, gt=0)
    kafka_notifier_group: str = "ticketblitz-notifier"
    # Tansu joins consumer groups slowly with kafka-python's defaults (shared/STACK.md).
    kafka_max_poll_interval_ms: int = Field(default=10_000, ge=1000)
    kafka_session_timeout_ms: int = Field(default=6_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    # E-mail (the notifier).
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    public_url: str = "http://localhost:8080"  # where fans reach the API: links in e-mails

    # Read side: projections/ and read_api/.
    read_wait_seconds: float = Field(default=2.0, ge=0, le=60)  # bound of `after=` waits
    read_cache_ttl_seconds: float = Field(default=2.0, gt=0)
    read_pool_size: int = Field(default=8, ge=1)
    projection_poll_seconds: float = Field(default=0.25, gt=0)  # fallback: NOTIFY wakes them
    projection_page_size: int = Field(default=1000, ge=1)
    rebuild_page_size: int = Field(default=5000, ge=1)

    # Operations (infra/logs.py, http_shell/health.py, ticketblitz/ops_server.py). The log
    # settings are read from the environment before anything else (they shape the first line).
    log_format: Literal["auto", "json", "text"] = "auto"  # auto: text on a terminal, else JSON
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `ticketblitz workers` and `projections run`: /healthz, /readyz and /metrics on this port
    # (0: off).
    ops_port: int = Field(default=0, ge=0, le=65535)
    ops_host: str = "0.0.0.0"
    # /readyz says "not ready" while a read model is more than this many seconds behind the log.
    ready_max_projection_lag_seconds: float = Field(default=30.0, gt=0)

    # Blobs (poster images): in PostgreSQL by default (schema `blobs` of the event store's
    # database), or in an S3-compatible object store (compose.yaml: MinIO).
    blob_store: Literal["postgres", "s3"] = "postgres"
    s3_endpoint_url: str | None = None  # None: AWS itself
    s3_bucket: str = "ticketblitz-posters"  # created at start when missing
    s3_access_key_id: str | None = None  # None: boto3's own credential chain
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"

    # Tickets (infra/ticket_signing.py): the Ed25519 key that signs ticket secrets (PEM, or
    # base64 of the 32 raw private bytes) and the base64 public keys of earlier keys, so that
    # tickets they signed still verify (comma-separated). Unset: keys kept in
    # `<data_dir>/ticket-keys/` (created at the first start; `ticketblitz tickets rotate-key`).
    ticket_signing_key: SecretStr | None = None
    ticket_public_keys: str | None = None
