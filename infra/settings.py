"""All configuration, from TICKETBLITZ_* environment variables (one typed Settings object)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    admin_email: str | None = None
    admin_password: SecretStr | None = None
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19_456, ge=1024)

    # Business rules that operators tune.
    hold_minutes: float = Field(default=10.0, gt=0)
    customer_ticket_limit: int | None = Field(default=None, ge=1)

    # Write path.
    max_batch: int = Field(default=500, ge=1)
    db_pool_size: int = Field(default=8, ge=1)
    command_timeout_seconds: float = Field(default=10.0, gt=0)

    # Redis-backed protections.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    rate_limit_enabled: bool = True
    rate_limit_login_per_minute: int = Field(default=20, ge=1)
    rate_limit_booking_per_minute: int = Field(default=120, ge=1)
    rate_limit_register_per_minute: int = Field(default=10, ge=1)
