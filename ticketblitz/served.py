"""The API worker processes of `ticketblitz serve --workers N`.

uvicorn's supervisor spawns N worker processes (each imports this module and calls
`app_from_env`) and restarts a worker that dies. Each worker listens on its own socket bound to
the same port with SO_REUSEPORT (Linux), so the kernel hashes each new connection to one of the
listening workers: every worker gets its share. With one socket shared by all (uvicorn's
default) the accepts race, and the worker that is idle at that instant wins: in
tests/e2e/test_serve_workers.py one process took 23 of 24 fans' keep-alive connections and did
all of their work while the other idled.

Each worker is a whole, stateless API process: its own container (connection pools, Redis
clients, show writers) built from the TICKETBLITZ_* settings. What must be in one place at a
time lives in the servers they share: a show's decisions behind the show's PostgreSQL advisory
lock (commands/show_writer.py), rate limits and idempotent answers in Redis, integration events
on Kafka partitions keyed by show. docs/SCALING.md says more.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from infra.logs import configure_logging
from infra.malloc_arenas import limit_malloc_arenas
from infra.settings import Settings
from infra.tracing import configure_tracing, stop_tracing
from ticketblitz.bootstrap import bootstrap
from ticketblitz.http_server import KEEP_ALIVE_SECONDS
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


class ReusePortSocket(socket.socket):
    """The port, bound (not listening) with SO_REUSEPORT, in the supervisor: it reserves the
    port. Handed to a spawned worker it does not travel as itself (a shared socket): the worker
    binds a socket of its own to the same address, which starts listening, and so joins the
    kernel's hash of the port's listeners, only once its app has started (uvicorn's startup
    runs the lifespan first). A worker that dies takes its socket along (connections it had
    not yet accepted are reset; the fans' clients retry); its replacement binds afresh.
    Only processes of the same user can join the port's listeners."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        host, port = self.getsockname()[:2]
        return _bound_in_worker, (host, port)


def reuse_port_socket(host: str, port: int) -> ReusePortSocket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = ReusePortSocket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _bound_in_worker(host: str, port: int) -> socket.socket:
    """(In a spawned worker, as its sockets arrive.) This worker's own listener-to-be."""
    try:
        return reuse_port_socket(host, port)
    except OSError as error:  # the supervisor stops rather than respawn a worker that cannot bind
        print(f"cannot bind {host}:{port}: {error}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)


def serve_workers(workers: int, host: str, port: int, apis: tuple[str, ...]) -> None:
    """Run `workers` API processes serving `apis` on `host:port`, each listening on a socket of
    its own (SO_REUSEPORT); uvicorn's supervisor spawns them and restarts any that dies."""
    os.environ[SERVE_APIS_ENV] = ",".join(apis)
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        log_config=None,  # uvicorn's lines go through our handler (infra/logs.py)
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        proxy_headers=False,  # it believes loopback's X-Forwarded-For: see client_address
    )
    reserved = reuse_port_socket(host, port)
    try:
        Multiprocess(config, sockets=[reserved]).run()
    except KeyboardInterrupt:
        pass
    finally:
        reserved.close()
