"""The Stripe emulator: ``localstripe``, with its state in our data dir, on 127.0.0.1 only.

localstripe 1.15 keeps its state in /tmp/localstripe.pickle, shared by every instance on the
machine and rewritten in place (a concurrent reader can load half a file), and it listens on
every interface. The program here (``python -m ticketblitz.stack.stripe_emulator PORT STATE``)
runs the same server with the state in ``STATE`` (written to a temporary file, then renamed)
and bound to 127.0.0.1 only.

localstripe also pickles its whole state after every object it stores (several times per
request): a cost that grows with every payment, until, some thousands of payments into a soak
run, the emulator is the bottleneck of the booking saga. Here the state is written at most
every :data:`DUMP_DELAY` seconds after a change, and when the server stops (SIGTERM, SIGINT).
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import os
import pickle
import socket
import sys
from pathlib import Path
from typing import Any

from ticketblitz.stack.processes import (
    LOOPBACK,
    ChildProcessServer,
    free_port,
    helper_environment,
    helper_program,
)

DUMP_DELAY = 0.5  # seconds between a change and the write of the state

# --------------------------------------------------------------------------------------
# The stack's side
# --------------------------------------------------------------------------------------


class StripeEmulator(ChildProcessServer):
    """The emulator as a child process: state in ``<data_dir>/stripe``, log ``logs/stripe.log``."""

    @property
    def api_base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def launch(self) -> None:
        port = self.port = self.port or free_port()
        state_dir = self.host.data_dir / "stripe"
        state_dir.mkdir(parents=True, exist_ok=True)
        argv = helper_program(__name__, str(port), str(state_dir / "localstripe.pickle"))
        self._process = self.host.spawn("stripe", argv, helper_environment(PYTHONUNBUFFERED="1"))

    def wait_ready(self, deadline: float) -> None:
        port = self.port

        def ready() -> bool:
            connection = http.client.HTTPConnection(LOOPBACK, port, timeout=1.0)
            try:
                connection.request("GET", "/v1/customers")
                connection.getresponse().read()  # any answer will do (401 without a key)
            finally:
                connection.close()
            return True

        log_path = self.host.logs_dir / "stripe.log"
        self.host.wait("stripe", log_path, ready, deadline, self._process)


# --------------------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------------------


class _StateFile:
    """localstripe's store, loaded from and written to one file, writes batched."""

    def __init__(self, path: str, store: dict[str, Any]) -> None:
        self.path = path
        self.store = store
        self.dump_due = False

    def load(self) -> None:
        try:
            with open(self.path, "rb") as state:
                old = pickle.load(state)
        except FileNotFoundError:
            return
        dict.clear(self.store)
        dict.update(self.store, old)

    def dump_now(self) -> None:
        self.dump_due = False
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as state:
            pickle.dump(dict(self.store), state, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, self.path)

    def dump_soon(self) -> None:
        if self.dump_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving (yet): write at once
            self.dump_now()
            return
        self.dump_due = True
        loop.call_later(DUMP_DELAY, self.dump_now)

    async def last_dump(self, _app: object) -> None:
        if self.dump_due:
            self.dump_now()


def serve(port: int, state_path: str) -> None:
    """Run localstripe on 127.0.0.1:``port`` with its state in ``state_path``; returns when
    the server stops (SIGTERM, SIGINT), after writing the state."""
    from aiohttp import web
    from localstripe import resources, server

    state = _StateFile(state_path, resources.store)
    # localstripe's one store calls these on itself after every change it makes.
    resources.Store.try_load_from_disk = lambda _store: state.load()
    resources.Store.dump_to_disk = lambda _store: state.dump_soon()
    state.load()
    server.app.on_cleanup.append(state.last_dump)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.StreamHandler())
    web.run_app(server.app, sock=sock, access_log=access)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[0].isdigit():
        sys.exit(f"usage: python -m {__spec__.name if __spec__ else __name__} PORT STATE_FILE")
    serve(int(args[0]), str(Path(args[1])))


if __name__ == "__main__":
    main()
