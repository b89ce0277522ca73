"""SSE clients for `bench reads`: many connections to `GET /shows/{id}/seats/events` in one
process, on raw asyncio protocols (no HTTP library: a chunk decoder and a split on blank lines).

    .venv/bin/python -m bench.sse_clients CONFIG.json RESULT.json

CONFIG: {"url", "show_id", "clients", "connect_batch"}. Connects every client, prints `ready`
on stdout once each has its first snapshot, then reads one line from stdin: the seat map's
final position. It stops once every client has an event at that position or later (or after
"grace_seconds"), and writes RESULT: each distinct event payload once ("payloads") and per
client its events as [position, kind, payload index, receive time (time.time())], its
reconnects and errors. A client whose stream ends (a slow client is dropped by the server, or
the stream's time is up) reconnects at once with `Last-Event-ID`, as a browser does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any, cast

from bench.clients import client_main

SNAPSHOT, SEATS = "s", "d"


class Payloads:
    """Each distinct `data:` once (every client of a show gets the very same texts)."""

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}

    def of(self, data: bytes) -> int:
        found = self.index.get(data)
        if found is None:
            found = self.index[data] = len(self.index)
        return found


class SseClient(asyncio.Protocol):
    def __init__(self, host: str, port: int, path: str, payloads: Payloads) -> None:
        self.host, self.port, self.path = host, port, path
        self.payloads = payloads
        self.events: list[list[Any]] = []
        self.last_id: int | None = None
        self.reconnects = 0
        self.errors: list[str] = []
        self.got_snapshot = asyncio.Event()
        self.closed = asyncio.Event()
        self.stopping = False
        self._transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self._head: bytes | None = None
        self._raw = b""  # bytes not decoded yet (head, or chunk framing)
        self._body = b""  # decoded stream not split into events yet
        self._chunk_left = -1  # bytes left in the current chunk (+2 for its CRLF); -1: size next

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        resume = "" if self.last_id is None else f"Last-Event-ID: {self.last_id}\r\n"
        self._transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: text/event-stream\r\n{resume}\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self._raw += data
        if self._head is None:
            end = self._raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head, self._raw = self._raw[:end], self._raw[end + 4 :]
            status = self._head.split(b" ", 2)[1]
            if status != b"200" or b"chunked" not in self._head.lower():
                self.errors.append(f"http-{status.decode()}")
                self._close()
                return
        self._dechunk()
        self._split()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.closed.set()

    # --- decoding ---------------------------------------------------------------------------

    def _dechunk(self) -> None:
        raw = self._raw
        while raw:
            if self._chunk_left < 0:
                end = raw.find(b"\r\n")
                if end < 0:
                    break
                size = int(raw[:end].split(b";", 1)[0], 16)
                raw = raw[end + 2 :]
                if size == 0:  # the stream ended
                    self._close()
                    raw = b""
                    break
                self._chunk_left = size + 2
            left = self._chunk_left
            take = raw[:left]
            raw = raw[len(take) :]
            self._body += take[: max(0, min(len(take), left - 2))]  # not the closing CRLF
            self._chunk_left = left - len(take)
            if self._chunk_left == 0:
                self._chunk_left = -1
        self._raw = raw

    def _split(self) -> None:
        if b"\n\n" not in self._body:
            return
        *blocks, self._body = self._body.split(b"\n\n")
        now = time.time()
        for block in blocks:
            position = kind = data = None
            for line in block.split(b"\n"):
                if line.startswith(b"data: "):
                    data = line[6:]
                elif line.startswith(b"id: "):
                    position = int(line[4:])
                elif line.startswith(b"event: "):
                    kind = SNAPSHOT if line[7:] == b"snapshot" else SEATS
            if position is None or data is None or kind is None:
                continue  # retry:, keep-alive comments
            self.last_id = position
            self.events.append([position, kind, self.payloads.of(data), now])
            if kind == SNAPSHOT:
                self.got_snapshot.set()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- the client's life ----------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while not self.stopping:
            self.closed.clear()
            self._reset()
            try:
                await loop.create_connection(lambda: self, self.host, self.port)
            except OSError as error:
                self.errors.append(type(error).__name__)
                await asyncio.sleep(0.2)
                continue
            if not first:
                self.reconnects += 1
            first = False
            await self.closed.wait()

    def stop(self) -> None:
        self.stopping = True
        self._close()


async def run(config: dict[str, Any]) -> dict[str, Any]:
    hostport = config["url"].split("://", 1)[1].rstrip("/")
    host, _, port = hostport.partition(":")
    path = f"/shows/{config['show_id']}/seats/events"
    payloads = Payloads()
    clients = [SseClient(host, int(port), path, payloads) for _ in range(int(config["clients"]))]
    tasks: list[asyncio.Task[None]] = []
    batch = int(config.get("connect_batch", 100))
    started = time.perf_counter()
    for i in range(0, len(clients), batch):
        group = clients[i : i + batch]
        tasks += [asyncio.create_task(c.run()) for c in group]
        try:
            async with asyncio.timeout(float(config.get("connect_seconds", 120.0))):
                await asyncio.gather(*(c.got_snapshot.wait() for c in group))
        except TimeoutError:
            print(
                "not connected: " + "; ".join(c.errors[-1] for c in group if c.errors), flush=True
            )
            raise SystemExit(1) from None
    connected_seconds = time.perf_counter() - started
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    final = int(line.strip() or 0)
    deadline = time.monotonic() + float(config.get("grace_seconds", 30.0))
    while time.monotonic() < deadline:
        if all(c.last_id is not None and c.last_id >= final for c in clients):
            break
        await asyncio.sleep(0.05)
    for c in clients:
        c.stop()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    ordered = sorted(payloads.index.items(), key=lambda item: item[1])
    return {
        "final_position": final,
        "connect_seconds": connected_seconds,
        "payloads": [data.decode() for data, _ in ordered],
        "clients": [
            {"events": c.events, "reconnects": c.reconnects, "errors": c.errors[:20]}
            for c in clients
        ],
    }


if __name__ == "__main__":
    client_main(run)
