"""Session fixtures: real servers (embedded stack, or external ones named by env vars)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings
from ticketblitz.embedded import EmbeddedStack, Mailbox, StackEndpoints

TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
ADMIN_EMAIL = "admin@tests.ticketblitz.dev"
ADMIN_PASSWORD = "admin-password-for-tests"


def write_api_env(settings: Settings) -> dict[str, str]:
    """The environment of a `ticketblitz serve --api write` process on `settings`' database
    and Redis: this process's, without its TICKETBLITZ_ variables, rate limits off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETBLITZ_")}
    env.update(
        TICKETBLITZ_DATABASE_URL=str(settings.database_url),
        TICKETBLITZ_REDIS_URL=str(settings.redis_url),
        TICKETBLITZ_JWT_SECRET=TEST_JWT_SECRET,
        TICKETBLITZ_RATE_LIMIT_ENABLED="false",
    )
    return env


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tb-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def endpoints(stack_dir: Path) -> Iterator[StackEndpoints]:
    """External servers when TICKETBLITZ_TEST_DATABASE_URL etc. are set, else embedded ones."""
    external_db = os.environ.get("TICKETBLITZ_TEST_DATABASE_URL")
    external_redis = os.environ.get("TICKETBLITZ_TEST_REDIS_URL")
    stack = EmbeddedStack(
        stack_dir,
        postgres=external_db is None,
        redis=external_redis is None,
        kafka=True,
        stripe=True,
        smtp=True,
    )
    started = stack.start()
    yield StackEndpoints(
        database_url=external_db or started.database_url,
        kafka_bootstrap=started.kafka_bootstrap,
        redis_url=external_redis or started.redis_url,
        stripe_api_base=started.stripe_api_base,
        smtp_host=started.smtp_host,
        smtp_port=started.smtp_port,
    )
    stack.stop()


@pytest.fixture(scope="session")
def mailbox(endpoints: StackEndpoints, stack_dir: Path) -> Mailbox:
    """The e-mails the session's embedded SMTP server received."""
    return EmbeddedStack(stack_dir).mailbox
