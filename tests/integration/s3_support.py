"""A real S3-compatible server for tests: moto's server mode, as a subprocess on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.e2e.saga_support import wait_until

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """Start moto_server, wait until it answers, yield its URL; stop it afterwards."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with (log_dir / "moto.log").open("wb") as log:
        server = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: server.poll() is not None or _answers(url), 60, "moto_server")
            assert server.poll() is None, f"moto_server exited (see {log_dir / 'moto.log'})"
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
