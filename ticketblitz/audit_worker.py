"""The hash chain follower as one of the workers of `ticketblitz up` and `ticketblitz workers`,
so the chain follows the log as it grows (a seal then has little left to do)."""

from __future__ import annotations

from audit.hash_chain import CHAIN_FOLLOWER, chain_follower
from infra.event_store import PostgresEventStore
from ticketblitz.workers import Worker, Workers


def with_hash_chain(workers: Workers, store: PostgresEventStore) -> Workers:
    """`workers` plus the hash chain follower (not started: `Workers.start` starts them all)."""
    follower = chain_follower(store)
    workers.workers.append(Worker(CHAIN_FOLLOWER, follower.run, follower.setup))
    return workers
