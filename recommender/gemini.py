"""Gemini over several API keys, in turn, each key behind a circuit breaker of its own.

`GOOGLE_API_KEYS` (comma-separated) lists the keys; `GOOGLE_API_KEY` alone still works. Each call
starts at the next key (round robin, spreading the quota of free keys), skips the keys whose
breaker is open, and on a failure goes on to the next key: a key that fails (quota, revoked,
unreachable) is left alone for `cooldown` seconds, then tried once again (half-open).
The clients are built on first use per key, so a process without keys never imports Gemini.

Logs name a key by its place ("key 2 of 3"), never by its value.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

from recommender.breaker import CircuitBreaker

log = logging.getLogger(__name__)

Client = TypeVar("Client")
Answer = TypeVar("Answer")

KEY_COOLDOWN_SECONDS = 60.0


def google_api_keys(environ: Mapping[str, str] | None = None) -> list[str]:
    """The configured keys, in order: `GOOGLE_API_KEYS`, else `GOOGLE_API_KEY` (none: [])."""
    env = os.environ if environ is None else environ
    listed = [k.strip() for k in env.get("GOOGLE_API_KEYS", "").split(",") if k.strip()]
    if listed:
        return list(dict.fromkeys(listed))  # a key listed twice is one key
    single = env.get("GOOGLE_API_KEY", "").strip()
    return [single] if single else []


class AllKeysFailedError(Exception):
    """Every key failed or is resting after failures: no answer this time."""


class KeyRotation(Generic[Client]):
    """One client per API key, used in turn (module docstring)."""

    def __init__(
        self,
        factories: Sequence[Callable[[], Client]],
        cooldown: float = KEY_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not factories:
            raise ValueError("no API key to rotate")
        self._factories = list(factories)
        self._clients: list[Client | None] = [None] * len(factories)
        # One failure opens a key's breaker: a key over its quota will fail again right away.
        self.breakers = [CircuitBreaker(1, cooldown, clock) for _ in factories]
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._factories)

    def call(self, use: Callable[[Client], Answer]) -> Answer:
        """`use` with the next key's client; with the following keys while it raises.
        AllKeysFailedError (from the last error) when no key answered."""
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self._factories)
        last: Exception | None = None
        for step in range(len(self._factories)):
            index = (start + step) % len(self._factories)
            breaker = self.breakers[index]
            if not breaker.allows():
                continue
            try:
                answer = use(self._client(index))
            except Exception as error:  # whatever the client raised: this key failed
                breaker.failed()
                log.warning(
                    "gemini: key %d of %d failed (%s); resting it for %.0fs",
                    index + 1,
                    len(self._factories),
                    type(error).__name__,
                    breaker.cooldown,
                )
                last = error
                continue
            breaker.succeeded()
            return answer
        raise AllKeysFailedError(
            "every Gemini key failed or is resting" + (f": {last}" if last else "")
        ) from last

    def _client(self, index: int) -> Client:
        client = self._clients[index]
        if client is None:
            client = self._clients[index] = self._factories[index]()
        return client
