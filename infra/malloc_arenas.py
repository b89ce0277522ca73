"""Fewer glibc malloc arenas for the long-running processes.

glibc gives threads up to 8 malloc arenas per core; each grows on its own and rarely gives
pages back, so a process with many threads (the APIs run blocking calls on a 64-thread pool)
creeps up in resident memory while its Python heap stays flat. Measured in the soak run
(docs/RELIABILITY.md): the API grew 0.31-0.34 MiB/min with the default, 0.07 with two arenas.
Must run before the process starts its threads. `MALLOC_ARENA_MAX` in the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # from glibc's malloc.h
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Ask glibc for at most `arenas` arenas; False where that is not possible (not glibc,
    or the operator chose with MALLOC_ARENA_MAX)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
