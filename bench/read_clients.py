"""Seat-map readers for `bench reads`: keep-alive clients refreshing one URL with conditional
requests, as browsers do, in a process of their own.

    .venv/bin/python -m bench.read_clients CONFIG.json RESULT.json

CONFIG: {"url", "path", "clients", "seconds"}. Each client loops on `GET path` over one
keep-alive HTTP/1.1 connection (asyncio streams, no HTTP library), sending `If-None-Match` with
the last `ETag` it was given (none if the server gives none). RESULT: requests, answers by
status, how many 200s carried an ETag, body bytes, and the latencies.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.clients import client_main


async def run(config: dict[str, Any]) -> dict[str, Any]:
    hostport = config["url"].split("://", 1)[1].rstrip("/")
    host, _, port = hostport.partition(":")
    path, seconds = config["path"], float(config["seconds"])
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    tagged = 0
    body_bytes = 0
    errors: dict[str, int] = {}
    start = asyncio.Event()
    ends = 0.0

    async def client() -> None:
        nonlocal tagged, body_bytes
        reader, writer = await asyncio.open_connection(host, int(port))
        plain = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        etag: str | None = None
        await start.wait()
        try:
            while time.perf_counter() < ends:
                head = plain + (f"If-None-Match: {etag}\r\n" if etag else "") + "\r\n"
                t0 = time.perf_counter()
                writer.write(head.encode())
                raw = await reader.readuntil(b"\r\n\r\n")
                length = 0
                lines = raw.split(b"\r\n")
                status = lines[0].split(b" ", 2)[1].decode()
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    lowered = name.lower()
                    if lowered == b"content-length":
                        length = int(value)
                    elif lowered == b"etag":
                        etag = value.strip().decode()
                        if status == "200":
                            tagged += 1
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
                body_bytes += length
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(int(config["clients"]))]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    started = time.perf_counter()
    ends = started + seconds
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "statuses": statuses,
        "tagged_200s": tagged,
        "body_bytes": body_bytes,
        "errors": errors,
        "latencies": latencies,
    }


if __name__ == "__main__":
    client_main(run)
