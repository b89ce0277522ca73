"""The app of one API worker process of `ticketblitz serve --workers N`.

uvicorn's supervisor binds the port once and hands the listening socket to N worker processes
(spawned: each imports this module and calls `app_from_env`), which accept on it in turn; it
restarts a worker that dies. Each worker is a whole, stateless API process: its own container
(connection pools, Redis clients, show writers) built from the TICKETBLITZ_* settings. What
must be in one place at a time lives in the servers they share: a show's decisions behind the
show's PostgreSQL advisory lock (commands/show_writer.py), rate limits and idempotent answers
in Redis, integration events on Kafka partitions keyed by show. docs/SCALING.md says more.
"""

from __future__ import annotations

import atexit
import os

from fastapi import FastAPI

from infra.logs import configure_logging
from infra.malloc_arenas import limit_malloc_arenas
from infra.settings import Settings
from infra.tracing import configure_tracing, stop_tracing
from ticketblitz.bootstrap import bootstrap
from ticketblitz.web import APIS, create_app

SERVE_APIS_ENV = "TICKETBLITZ_SERVE_APIS"  # which APIs the workers serve: "write,read" etc.
APP_FACTORY = "ticketblitz.served:app_from_env"


def app_from_env() -> FastAPI:
    """The app of one worker process (uvicorn calls it once in each, `factory=True`)."""
    limit_malloc_arenas()
    configure_logging()
    if configure_tracing(f"ticketblitz-serve-{os.getpid()}"):
        atexit.register(stop_tracing)
    container = bootstrap(Settings())
    atexit.register(container.close)  # the worker's pools and writers, when it exits
    wanted = os.environ.get(SERVE_APIS_ENV, ",".join(APIS))
    apis = tuple(a for a in APIS if a in wanted.split(","))
    return create_app(container, apis or APIS)
