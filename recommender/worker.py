"""Running the `recommender` follower among the workers (`ticketblitz up` and `workers`)."""

from __future__ import annotations

from infra.bootstrap import Container
from process_managers.workers import Worker, Workers
from recommender.embedder import embedder_from_env
from recommender.projection import FOLLOWER, recommender_follower


def with_recommender(workers: Workers, container: Container) -> Workers:
    """`workers` plus the recommender follower, if this database has pgvector (not started)."""
    if container.recommender is None:
        return workers
    follower = recommender_follower(
        container.store, embedder_from_env(), container.settings.worker_poll_seconds
    )
    workers.workers.append(Worker(FOLLOWER, follower.run, follower.setup))
    return workers
