"""Errors raised by command handlers (beyond the domain's own rule violations)."""

from __future__ import annotations

from uuid import UUID


class CommandError(Exception):
    """A command could not be carried out; nothing was written."""


class NotFoundError(CommandError):
    def __init__(self, kind: str, aggregate_id: UUID) -> None:
        super().__init__(f"{kind} {aggregate_id} not found")
        self.kind = kind
        self.aggregate_id = aggregate_id


class ForbiddenError(CommandError):
    """The caller is authenticated but may not act on this resource."""


class AccountExistsError(CommandError):
    def __init__(self, email: str) -> None:
        super().__init__(f"an account for {email} already exists")
        self.email = email


class ConcurrencyError(CommandError):
    """Optimistic version checks kept failing after the bounded number of retries."""


class VersionConflictError(CommandError):
    """An append carried a stale expected version (raised by the event store adapter)."""


class StoreUnavailableError(CommandError):
    """The event store cannot be reached right now; the command had no effect."""


class IdempotencyMismatchError(CommandError):
    """An Idempotency-Key was reused with a different request."""
