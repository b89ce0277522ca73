"""The guardian: a process that stops the embedded servers when the stack's process is gone.

The stack (:class:`Guardian`) starts ``python -m ticketblitz.stack.guardian`` and writes
``watch PID START_TICKS SIGNAL`` / ``unwatch PID`` lines to its stdin. At end of file (the
stack closed the pipe, or its process died, even by SIGKILL) the program signals every process
still watched, waits up to :data:`GRACE` seconds, then SIGKILLs what is left. It ignores
SIGINT/SIGTERM/SIGHUP so a signal sent to the whole process group cannot make it skip the
cleanup. A start time (``/proc/PID/stat`` ticks) tells a watched server from a later process
that got its id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ticketblitz.stack.processes import helper_environment, helper_program, proc_start_ticks

GRACE = 10.0  # seconds the watched servers get to stop before SIGKILL

# --------------------------------------------------------------------------------------
# The stack's side
# --------------------------------------------------------------------------------------


class Guardian:
    """The handle on a guardian process that stops the watched servers when we go away."""

    def __init__(self, log_path: Path) -> None:
        with open(log_path, "ab") as log:
            self._process: subprocess.Popen[bytes] = subprocess.Popen(
                helper_program(__name__),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=helper_environment(),
                start_new_session=True,  # out of reach of signals sent to our process group
            )
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _send(self, line: str) -> None:
        stdin = self._process.stdin
        if stdin is None:
            return
        with self._lock, contextlib.suppress(OSError, ValueError):
            stdin.write(line.encode() + b"\n")
            stdin.flush()

    def watch(self, pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
        self._send(f"watch {pid} {proc_start_ticks(pid)} {int(sig)}")

    def unwatch(self, pid: int) -> None:
        self._send(f"unwatch {pid}")

    def close(self) -> None:
        """End of file for the guardian: it stops whatever is still watched, then exits."""
        if self._process.stdin is not None:
            with self._lock, contextlib.suppress(OSError, ValueError):
                self._process.stdin.close()
        try:
            self._process.wait(GRACE + 5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# --------------------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------------------

Watched = dict[int, tuple[str, int]]  # pid -> (start ticks or "-", signal to stop it)


def _alive(pid: int, started: str) -> bool:
    if started == "-":  # start time unknown: any process with that id counts
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return proc_start_ticks(pid) == started


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def read_watch_list(lines: Iterable[str]) -> Watched:
    """The processes still watched once ``lines`` end; malformed lines are ignored."""
    watched: Watched = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "watch":
            watched[int(parts[1])] = (parts[2], int(parts[3]))
        elif len(parts) == 2 and parts[0] == "unwatch":
            watched.pop(int(parts[1]), None)
    return watched


def stop_watched(watched: Watched, grace: float = GRACE) -> None:
    """Signal every watched process still alive; SIGKILL those alive after ``grace`` s."""
    for pid, (started, sig) in watched.items():
        if _alive(pid, started):
            _signal(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p, s) for p, (s, _) in watched.items()):
        time.sleep(0.05)
    for pid, (started, _) in watched.items():
        if _alive(pid, started):
            _signal(pid, signal.SIGKILL)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    stop_watched(read_watch_list(sys.stdin))


if __name__ == "__main__":
    main()
