"""Small helpers shared by the process managers' task tables."""

from __future__ import annotations

import hashlib
import logging
from uuid import UUID

from commands.errors import (
    ConcurrencyError,
    PaymentGatewayUnavailableError,
    StoreUnavailableError,
)

# Failures that heal by themselves: a retry later is the whole remedy.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    PaymentGatewayUnavailableError,
    StoreUnavailableError,
    ConcurrencyError,
    TimeoutError,
)


def retry_delay(attempts: int, first: float = 0.5, cap: float = 60.0) -> float:
    """Exponential backoff: 0.5 s, 1 s, 2 s, ... up to a minute."""
    return float(min(cap, first * 2 ** min(attempts, 16)))


def advisory_key(kind: str, item: UUID) -> int:
    """A signed 64-bit key for pg_advisory_lock on one item of one kind of work."""
    digest = hashlib.blake2b(kind.encode() + b":" + item.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def log_failure(log: logging.Logger, what: str, error: Exception, delay: float) -> None:
    """Transient failures are one line; anything else (a bug) gets its traceback."""
    if isinstance(error, TRANSIENT_ERRORS):
        log.warning("%s: %s; retrying in %.1fs", what, error, delay)
    else:
        log.error("%s failed; retrying in %.1fs", what, delay, exc_info=error)
