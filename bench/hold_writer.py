"""A paced writer for `bench reads`: one-seat holds (best available) at a steady rate.

    .venv/bin/python -m bench.hold_writer CONFIG.json RESULT.json

CONFIG: {"url", "show_id", "tokens": [one per connection], "rate" (holds/s), "seconds"}. Hold
number i is due at start + i / rate; each connection (bench/loadgen.py's raw HTTP/1.1 client)
takes the next due slot, waits for its time and sends `POST /api/v1/bookings` with
`{"show_id", "quantity": 1}`. It stops after `seconds` or once the show is sold out. RESULT: per
successful hold [booking id, seats, time.time() the request was sent, latency], the answers by
status, and the request latencies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.loadgen import RawConnection, TransportError


async def run(config: dict[str, Any]) -> dict[str, Any]:
    url, show_id = config["url"], config["show_id"]
    rate, seconds = float(config["rate"]), float(config["seconds"])
    connections = [RawConnection(url, 30.0) for _ in config["tokens"]]
    await asyncio.gather(*(c.request("GET", "/health") for c in connections))
    slots = itertools.count()
    holds: list[list[Any]] = []
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    sold_out = asyncio.Event()
    started = time.perf_counter()
    ends = started + seconds

    async def worker(connection: RawConnection, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        body = {"show_id": show_id, "quantity": 1}
        while not sold_out.is_set():
            due = started + next(slots) / rate
            if due >= ends:
                return
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            sent, t0 = time.time(), time.perf_counter()
            try:
                status, answer = await connection.request("POST", "/api/v1/bookings", body, headers)
            except TransportError as error:
                statuses[f"transport:{error}"] = statuses.get(f"transport:{error}", 0) + 1
                continue
            latency = time.perf_counter() - t0
            latencies.append(latency)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 201:
                holds.append([answer["booking_id"], answer["seats"], sent, latency])
            elif status == 409 and str(answer.get("type", "")).endswith("not-enough-tickets"):
                sold_out.set()

    try:
        await asyncio.gather(
            *(worker(c, t) for c, t in zip(connections, config["tokens"], strict=True))
        )
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    elapsed = time.perf_counter() - started
    return {
        "holds": holds,
        "statuses": statuses,
        "latencies": latencies,
        "seconds": elapsed,
        "sold_out": sold_out.is_set(),
    }


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(run(config))
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
