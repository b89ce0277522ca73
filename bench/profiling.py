"""Sampling a running benchmark with py-spy (`pip install py-spy`), and its top costs.

py-spy records in its raw (collapsed stacks) format; `top_costs` folds the samples into the
functions that were on the CPU themselves (self) and those under which the time went (inclusive).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r":\d+\)$")


def py_spy_binary() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class PySpy:
    """`py-spy record --pid` in the background; stop() ends it and leaves the raw samples."""

    def __init__(self, pid: int, out: Path, rate: int = 250, gil: bool = False) -> None:
        self.out = out
        binary = py_spy_binary()
        if binary is None:
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        argv = [binary, "record", "--pid", str(pid), "--format", "raw", "-o", str(out)]
        argv += ["--rate", str(rate), "--nonblocking", "--threads"]
        if gil:
            argv.append("--gil")
        self._argv = argv
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PySpy:
        self._proc = subprocess.Popen(
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return self

    def stop(self) -> Path:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        return self.out


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (file.py)`: one entry per function, not per line."""
    frame = _LINE.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    if where:
        where = where.rstrip(")")
        parts = where.split("/")
        short = "/".join(parts[-2:])
        return f"{name} ({short})"
    return name


def top_costs(paths: list[Path], n: int = 20, thread_filter: str | None = None) -> dict[str, Any]:
    """Self and inclusive shares of the samples (optionally only threads whose name contains
    `thread_filter`, e.g. "show-writer")."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            thread = next((f for f in frames[:2] if f.startswith("thread")), "")
            if thread_filter is not None and thread_filter not in thread:
                continue
            threads[_thread_name(thread)] += count
            calls = [_function(f) for f in frames if not f.startswith(("thread", "process"))]
            if not calls:
                continue
            total += count
            own[calls[-1]] += count
            for name in set(calls):
                inclusive[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, 100.0 * v / total) for k, v in counter.most_common(n)] if total else []

    return {
        "samples": total,
        "self_pct": share(own),
        "inclusive_pct": share(inclusive),
        "threads_pct": share(threads),
    }


def _thread_name(frame: str) -> str:
    match = re.search(r'"([^"]*)"', frame)
    return match.group(1) if match else frame
