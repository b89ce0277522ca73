"""The embedded PostgreSQL 16 + pgvector (``pgserver``), its cluster in ``<data_dir>/pg``."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ticketblitz.stack.processes import ServerHost, log_tail, pid_alive

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

_log = logging.getLogger(__name__)

MAX_CONNECTIONS = 500


def _postmaster_pid(pg_dir: Path) -> int | None:
    try:
        return int((pg_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


class Postgres:
    """pgserver's cluster in ``pg_dir``, logging to ``<pg_dir>/log``.

    A server already running on that cluster (another process's stack) is shared, and left
    running at :meth:`stop` while other processes hold it.
    """

    def __init__(self, host: ServerHost, pg_dir: Path) -> None:
        self.host = host
        self.pg_dir = pg_dir
        self.url: str | None = None  # libpq URI (pgserver's is a unix-socket URI)
        self._server: PostgresServer | None = None
        self._pid: int | None = None
        self._ours = False  # started by us, not found running

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def pid(self) -> int | None:
        """The postmaster's process id."""
        return self._pid

    def launch(self) -> None:
        """Start (or join) the cluster; returns once it accepts connections."""
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
                f"{log_tail(log_path)}"
            ) from error
        self._server = server
        self._ours = not was_running
        self._pid = server.get_pid()
        if self._ours and self._pid is not None:
            self.host.watch(self._pid, signal.SIGINT)  # SIGINT: fast shutdown
        url = self.url = server.get_uri()

        def ready() -> bool:
            import psycopg

            with psycopg.connect(url, autocommit=True, connect_timeout=2) as connection:
                connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            return True

        self.host.wait("postgres", log_path, ready, time.monotonic() + self.host.timeout)
        if self._ours:
            self._raise_connection_limit(url, log_path)

    def wait_ready(self, deadline: float) -> None:
        """Nothing to wait for: :meth:`launch` returns once the server accepts connections."""

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
        assert self._server is not None
        old_pid = self._pid
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                *("-D", str(self._server.pgdata), "-l", str(log_path)),
                *("-w", "-t", "30", "-m", "fast", "restart"),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._server.system_user,
            timeout=60,
        )
        pid = _postmaster_pid(self.pg_dir)
        if old_pid is not None:
            self.host.unwatch(old_pid)
        if pid is not None:
            self.host.watch(pid, signal.SIGINT)
        self._pid = pid

        def ready() -> bool:
            with psycopg.connect(url, autocommit=True, connect_timeout=2):
                return True

        self.host.wait("postgres", log_path, ready, time.monotonic() + self.host.timeout)

    def stop(self) -> None:
        server, self._server = self._server, None
        pid, self._pid = self._pid, None
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
            others = [p for p in holders.get() if p != os.getpid() and pid_alive(p)]
            holders.put(others)
            if PostgresServer._instances.get(server.pgdata) is server:
                del PostgresServer._instances[server.pgdata]
            atexit.unregister(server._cleanup)
            if not self._ours and others:
                _log.info("leaving postgres in %s running for processes %s", server.pgdata, others)
                if pid is not None:
                    self.host.unwatch(pid)
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
                    if pid is not None and pid_alive(pid):
                        _log.warning("pg_ctl stop failed; killing postgres %s", pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        if pid is not None:
            self.host.unwatch(pid)
