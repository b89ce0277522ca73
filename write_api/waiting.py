"""Awaiting the show writers' futures from async endpoints, bounded in time."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


async def outcome_of(future: Future[T], timeout: float) -> T:
    """Shielded: a client that gives up does not cancel a command already queued for commit."""
    outcome = asyncio.wrap_future(future)
    try:
        return await asyncio.wait_for(asyncio.shield(outcome), timeout)
    finally:
        if not outcome.done():  # timed out or the client left: nobody will await it any more
            outcome.add_done_callback(_nobody_waits)


def _nobody_waits(outcome: asyncio.Future[Any]) -> None:
    """Retrieve a late outcome, so that asyncio does not log a failure nobody awaited (e.g.
    while the event store is down) as "Future exception was never retrieved"."""
    if not outcome.cancelled():
        outcome.exception()
