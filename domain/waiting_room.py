"""The waiting room's order and pace: arithmetic on times, no I/O and no background process.

Fans who join before the sale opens are drawn: their order among themselves is that of an HMAC
of their queue token under a secret key (`draw`), unknown to anyone without the key and fixed
per token, so arriving early, hammering or joining again changes nothing. Fans who join later
queue behind them, in arrival order.

Places are "slots", 1-based. Slot k is let in when floor(rate x minutes since the opening)
reaches k (`admitted_count`, `slot_time`): the pace needs only the clock. An early fan's slot
is their rank in the draw; a later fan takes the slot after the last one given, or the one
being let in right now when nobody is waiting (`late_slot`): slots nobody waited for are not
saved up, so whenever someone waits, fans are let in at exactly the configured rate.
A fan's `position` is how many slots are still to go up to theirs (1: next), 0 once let in.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

MAX_ADMITS_PER_MINUTE = 100_000
MICROS_PER_MINUTE = 60_000_000
DRAW_BITS = 52  # a draw is exact as a Redis sorted set's score (a double)


def draw(key: bytes, show_id: UUID, token: str) -> int:
    """The token's lot in the show's draw: HMAC-SHA256(key, show:token), its top 52 bits."""
    digest = hmac.new(key, f"{show_id}:{token}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - DRAW_BITS)


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def admitted_count(rate: int, opens_at: datetime, now: datetime) -> int:
    """Slots let in by `now`: floor(rate x minutes since the opening), in exact integers."""
    if now <= opens_at:
        return 0
    return rate * _micros(now - opens_at) // MICROS_PER_MINUTE


def slot_time(rate: int, opens_at: datetime, slot: int) -> datetime:
    """When slot `slot` is let in: the first instant at which admitted_count reaches it."""
    return opens_at + timedelta(microseconds=-(-slot * MICROS_PER_MINUTE // rate))


def late_slot(last_slot: int, admitted_now: int) -> int:
    """The slot of a fan joining after the opening: behind the last slot given, or the slot
    being let in now if everyone before was let in (an empty room saves up no slots)."""
    return max(last_slot + 1, admitted_now)


@dataclass(frozen=True)
class QueuePlace:
    """Where a queue token stands at a moment. Before the opening nothing is known yet
    (`slot` and `position` None): the draw decides at the opening."""

    slot: int | None
    position: int | None
    admitted: bool
    estimated_wait_seconds: int | None


def place_of(rate: int, opens_at: datetime, now: datetime, slot: int | None) -> QueuePlace:
    if slot is None or now < opens_at:
        return QueuePlace(None, None, False, None)
    admitted = admitted_count(rate, opens_at, now)
    if slot <= admitted:
        return QueuePlace(slot, 0, True, 0)
    wait = slot_time(rate, opens_at, slot) - now
    return QueuePlace(slot, slot - admitted, False, math.ceil(wait.total_seconds()))


def draw_order(draws: dict[str, int]) -> list[str]:
    """The early fans' order: by draw, ties (2^-52 likely) by token, as Redis orders them."""
    return sorted(draws, key=lambda token: (draws[token], token))


def rank_correlation(first: Sequence[str], second: Sequence[str]) -> float:
    """Spearman's rank correlation of two orders of the same items (1: the same order, -1:
    reversed, near 0: unrelated); nan for fewer than two items."""
    n = len(first)
    if n != len(second) or set(first) != set(second):
        raise ValueError("two orders of the same items are needed")
    if n < 2:
        return math.nan
    rank = {item: i for i, item in enumerate(second)}
    squares = sum((i - rank[item]) ** 2 for i, item in enumerate(first))
    return 1.0 - 6.0 * squares / (n * (n * n - 1))


@dataclass(frozen=True)
class WaitingRoomShow:
    """What the waiting room needs of a show: its rate (None: no waiting room) and window."""

    show_id: UUID
    rate: int | None
    opens_at: datetime | None
    closes_at: datetime  # the sale's close (its start for shows from before sale windows)
    cancelled: bool = False

    def is_active(self, now: datetime) -> bool:
        """Bookings need an admission: a waiting room, and the sale window is open."""
        return (
            self.rate is not None
            and self.opens_at is not None
            and not self.cancelled
            and self.opens_at <= now < self.closes_at
        )

    def takes_joins(self, now: datetime) -> bool:
        """Fans may queue from the announcement until the sale closes."""
        return (
            self.rate is not None
            and self.opens_at is not None
            and not self.cancelled
            and (now < self.closes_at)
        )
