"""Running the HTTP app with uvicorn in a background thread (tests, benchmarks, `up`)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

# Idle keep-alive connections stay open longer than clients keep them (httpx: 5 s, load
# balancers: 60 s). Were the server to close first (uvicorn's default is 5 s, the same as
# httpx's), a request sent on a connection just being closed would fail with a read error.
KEEP_ALIVE_SECONDS = 65


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class BackgroundServer:
    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            proxy_headers=False,  # it believes loopback's X-Forwarded-For: see client_address
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
