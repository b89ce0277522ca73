"""Starting a TicketBlitz process from a test: waiting for it to answer, or for its death."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_healthy(process: subprocess.Popen[str], base: str, seconds: float, what: str) -> None:
    """Until `base`/health answers 200; fails with the process's output if it exits first."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what} did not become healthy"
        time.sleep(0.2)
