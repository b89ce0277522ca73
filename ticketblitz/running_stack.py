"""What a running `ticketblitz up` leaves in its data directory for other commands.

- `up.lock`: held (flock) while it runs, with its pid: a second `up` on the same directory
  would share the database with a Stripe emulator of its own (payments then fail), so it is
  refused and told which process holds the directory.
- `endpoints.json`: the addresses of the servers it started (the embedded broker's port
  changes at every start), so that `ticketblitz recommender ...` and the other commands find
  them. Only believed while the lock is held: a file a killed `up` left behind is ignored.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

LOCK_FILE = "up.lock"
ENDPOINTS_FILE = "endpoints.json"
RECORDED = ("database_url", "kafka_bootstrap", "redis_url", "stripe_api_base", "smtp_host")


class DataDirInUseError(RuntimeError):
    """Another `ticketblitz up` runs on this data directory."""


def _holder(lock_path: Path) -> str:
    with suppress(OSError):
        text = lock_path.read_text().strip()
        if text:
            return f"process {text}"
    return "another process"


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data directory for this process (released however the process ends)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirInUseError(
                f"{data_dir} is in use by `ticketblitz up` ({_holder(lock_path)}): stop it "
                "first, or give another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            with suppress(OSError):
                (data_dir / ENDPOINTS_FILE).unlink()
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def record_endpoints(data_dir: Path, endpoints: dict[str, Any]) -> None:
    """Write the running stack's addresses (atomically: readers never see half a file)."""
    final = data_dir / ENDPOINTS_FILE
    temporary = data_dir / f".{ENDPOINTS_FILE}.tmp"
    temporary.write_text(json.dumps(endpoints, indent=2) + "\n")
    temporary.replace(final)


def running_endpoints(data_dir: Path) -> dict[str, Any] | None:
    """The addresses recorded by the `ticketblitz up` running on `data_dir`, or None when none
    runs there (no lock held: whatever file is there is stale)."""
    lock_path = data_dir / LOCK_FILE
    if not lock_path.exists():
        return None
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: an `up` runs
        else:
            return None  # we got it: nobody runs there
        try:
            recorded = json.loads((data_dir / ENDPOINTS_FILE).read_text())
        except (OSError, ValueError):
            return None  # starting, or stopping
        return recorded if isinstance(recorded, dict) else None
    finally:
        os.close(fd)
