"""Awaiting the show writers' futures from async endpoints, bounded in time."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


async def outcome_of(future: Future[T], timeout: float) -> T:
    """Shielded: a client that gives up does not cancel a command already queued for commit."""
    return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
