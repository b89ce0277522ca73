"""What a client process (`python -m bench.MODULE CONFIG RESULT`) shares with its launcher. Only
the standard library: a client process loads no more than its own load generator needs."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

# The folder client processes run in, so that `-m bench.MODULE` finds the package.
ROOT = Path(__file__).resolve().parent.parent


def client_main(run: Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]) -> None:
    """Run `run` on the JSON config at argv[1] (on uvloop when installed) and write its result
    as JSON to argv[2]."""
    config = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop

        result = uvloop.run(run(config))
    except ImportError:
        result = asyncio.run(run(config))
    Path(sys.argv[2]).write_text(json.dumps(result))
