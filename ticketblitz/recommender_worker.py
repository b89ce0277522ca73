"""Running the recommender's Kafka consumer among the workers (`ticketblitz workers`; `up` runs
it beside the projection runners instead, projections/read_side.py)."""

from __future__ import annotations

import logging

from http_shell.container import Container
from recommender.embedder import embedder_from_env
from recommender.projection import FOLLOWER
from recommender.runner import RecommenderConsumer
from ticketblitz.workers import Worker, Workers

log = logging.getLogger(__name__)


def with_recommender(workers: Workers, container: Container) -> Workers:
    """`workers` plus the recommender's consumer, if this database has pgvector and Kafka is
    configured (not started)."""
    if container.recommender is None:
        return workers
    if container.settings.kafka_bootstrap is None:
        log.warning("no Kafka configured: the recommender's tables are not kept up to date")
        return workers
    consumer = RecommenderConsumer(container.store, container.settings, embedder_from_env())
    workers.workers.append(Worker(FOLLOWER, consumer.run, consumer.setup))
    return workers
