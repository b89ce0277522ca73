"""What every embedded server shares: free ports, child processes that die with us, waiting
until a server answers, and the helper programs of this package run as ``python -m``."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
# The folder that holds the `ticketblitz` package: a helper program must find the very code
# this process runs, whether it is installed (editable or not) or only on PYTHONPATH.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def proc_start_ticks(pid: int) -> str:
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return proc_start_ticks(pid) != "-" or not Path("/proc/self/stat").exists()


def death_signal_preexec() -> Callable[[], None] | None:
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


def helper_program(module: str, *args: str) -> list[str]:
    """The command line that runs ``module`` (a helper program of this package)."""
    return [sys.executable, "-m", module, *args]


def helper_environment(**extra: str) -> dict[str, str]:
    """This process's environment, with our source root first on PYTHONPATH (see above)."""
    inherited = os.environ.get("PYTHONPATH")
    path = str(_SOURCE_ROOT) if not inherited else os.pathsep.join([str(_SOURCE_ROOT), inherited])
    return {**os.environ, "PYTHONPATH": path, **extra}


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail)


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
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


class Watcher(Protocol):
    """What stops our servers if this process dies (`guardian.Guardian`, which builds on this
    module: so it is named here by what it does, not imported)."""

    def watch(self, pid: int, sig: signal.Signals = signal.SIGTERM) -> None: ...

    def unwatch(self, pid: int) -> None: ...


class ServerHost:
    """What the servers of one stack share: the data dir, the start timeout, the guardian."""

    def __init__(self, data_dir: Path, timeout: float, guardian: Watcher | None) -> None:
        self.data_dir = data_dir
        self.timeout = timeout
        self.guardian = guardian

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def watch(self, pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.guardian is not None:
            self.guardian.watch(pid, sig)

    def unwatch(self, pid: int) -> None:
        if self.guardian is not None:
            self.guardian.unwatch(pid)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start a server process logging to ``logs/<name>.log``, watched by the guardian."""
        with open(self.logs_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=False,
                preexec_fn=death_signal_preexec(),
            )
        self.watch(process.pid)
        return process

    def stop(self, process: subprocess.Popen[bytes] | None) -> None:
        """Stop a process from :meth:`spawn` (if any) and stop watching it."""
        if process is not None:
            stop_process(process)
            self.unwatch(process.pid)

    def wait(
        self,
        name: str,
        log_path: Path,
        ready: Callable[[], bool],
        deadline: float,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """Poll ``ready`` until it is true; ``RuntimeError`` naming the log if ``process``
        exits or ``deadline`` (``time.monotonic()``) passes first."""
        last_error: BaseException | None = None
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"embedded {name} exited with status {process.returncode} while starting; "
                    f"see its log {log_path}:\n{log_tail(log_path)}"
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
                    f"{detail}; see its log {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(0.05)


class ChildProcessServer:
    """A server that is one child process of ours (from :meth:`ServerHost.spawn`) on a TCP
    port; a subclass launches it and waits until it answers."""

    def __init__(self, host: ServerHost) -> None:
        self.host = host
        self.port: int | None = None  # kept across a restart
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self) -> None:
        process, self._process = self._process, None
        self.host.stop(process)
