"""The HTTP load generator: a separate process of asyncio + httpx clients, one per fan.

    .venv/bin/python -m bench.loadgen CONFIG.json RESULT.json

CONFIG: {"url", "tokens": [one bearer token per client], "show_id", "rows": [[label, seats]],
"chosen_ratio", "max_quantity", "max_tickets_per_customer", "seed", "timeout", "max_seconds",
"client"}; optional "show_ids" (several shows on sale at once: fan i asks for show i mod n),
"pay_share" and "payment_method" (that share of fans pays with each hold and polls the booking
until it is confirmed: RESULT's "confirmed" holds hold-to-confirmed seconds).
Every client loops on `POST /api/v1/bookings` (1-4 seats, chosen or best-available,
bench/mix.py) until the show is sold out or the client holds its share of the show (the show's
`max_tickets_per_customer`; a 409 `ticket-limit-reached` ends it too), recording each request's
latency. RESULT holds the latencies, the answers by kind,
every successful hold (booking id and seats, for the oversell check) and this process's CPU use.

"client": "httpx" (default: one httpx.AsyncClient with one keep-alive connection per fan) or
"raw" (a minimal HTTP/1.1 keep-alive client on asyncio streams: same requests, a fraction of
httpx's CPU per request, for when the load generator would be the bottleneck).
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.mix import HELD, NOT_ENOUGH, SEATS_UNAVAILABLE, TICKET_LIMIT, Fan, SeatView


class TransportError(Exception):
    pass


class HttpxConnection:
    def __init__(self, url: str, timeout: float) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._http = httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout)

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        try:
            response = await self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise TransportError(type(error).__name__) from error
        return response.status_code, response.json() if response.content else None

    async def close(self) -> None:
        await self._http.aclose()


class RawConnection:
    """HTTP/1.1 with keep-alive over one asyncio stream; JSON bodies with Content-Length."""

    def __init__(self, url: str, timeout: float) -> None:
        hostport = url.split("://", 1)[1].rstrip("/")
        host, _, port = hostport.partition(":")
        self._host, self._port = host, int(port or 80)
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        try:
            return await asyncio.wait_for(self._request(method, path, body, headers), self._timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
            await self.close()
            raise TransportError(type(error).__name__) from error

    async def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str] | None
    ) -> tuple[int, Any]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        content = await self._reader.readexactly(length) if length else b""
        return status, json.loads(content) if content else None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None


Connection = HttpxConnection | RawConnection


async def _client(
    http: Connection,
    token: str,
    fan: Fan,
    show_id: str,
    t0: float,
    out: dict[str, Any],
    stop: asyncio.Event,
    deadline: float,
    payer: Payer | None = None,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = out["latencies"]
    held_latencies: list[float] = out["held_latencies"]
    while not fan.done and not stop.is_set() and time.perf_counter() < deadline:
        ask = fan.next_ask()
        asked = ask.body(show_id)
        if payer is not None:  # pays with the hold (the README's walkthrough)
            asked["payment_method"] = payer.method
        started = time.perf_counter()
        try:
            status, body = await http.request("POST", "/api/v1/bookings", asked, headers)
        except TransportError as error:
            kind = f"transport:{error}"
            out["kinds"][kind] = out["kinds"].get(kind, 0) + 1
            await asyncio.sleep(0.05)
            continue
        ended = time.perf_counter()
        latencies.append(ended - started)
        out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
        if status == 201:
            held_latencies.append(ended - started)
            hold = [body["booking_id"], body["seats"], round(ended - t0, 4), show_id]
            out["holds"].append(hold)
            if payer is not None:
                payer.watch(body["booking_id"], ended, headers)
            fan.learn(ask, HELD, body["seats"])
            kind = HELD
        elif status == 409:
            kind = str(body.get("type", "")).rsplit("/", 1)[-1]
            if kind == SEATS_UNAVAILABLE:
                fan.learn(ask, kind, body.get("seats") or [])
            elif kind == NOT_ENOUGH:
                fan.learn(ask, kind, available=body.get("available"))
                if fan.sold_out:
                    stop.set()  # one fan saw it sold out: the others stop asking
            elif kind == TICKET_LIMIT:
                fan.learn(ask, kind, remaining=body.get("remaining"))  # this fan alone stops
        else:
            kind = f"http-{status}"
            if status in (429, 503):
                await asyncio.sleep(0.05)
        out["kinds"][kind] = out["kinds"].get(kind, 0) + 1
        mode = out["by_mode"]["chosen" if ask.seats is not None else "best"]
        mode[kind] = mode.get(kind, 0) + 1


class Payer:
    """A fan who pays with each hold: polls each booking (`GET /bookings/{id}`, its own
    connection) until the read side says "confirmed"; records hold answer -> seen confirmed."""

    def __init__(self, http: Connection, method: str, out: dict[str, Any], deadline: float):
        self.method = method
        self._http = http
        self._out = out
        self._deadline = deadline
        self._lock = asyncio.Lock()  # one request at a time on the connection
        self.tasks: list[asyncio.Task[None]] = []

    async def close(self) -> None:
        await self._http.close()

    def watch(self, booking_id: str, held_at: float, headers: dict[str, str]) -> None:
        self.tasks.append(asyncio.create_task(self._poll(booking_id, held_at, headers)))

    async def _poll(self, booking_id: str, held_at: float, headers: dict[str, str]) -> None:
        status = "unseen"
        while time.perf_counter() < self._deadline + 30:
            await asyncio.sleep(0.02)
            try:
                async with self._lock:
                    code, body = await self._http.request(
                        "GET", f"/api/v1/bookings/{booking_id}", None, headers
                    )
            except TransportError:
                continue
            if code == 200 and isinstance(body, dict):
                status = str(body.get("status"))
                if status == "confirmed":
                    self._out["confirmed"].append(time.perf_counter() - held_at)
                    return
                if status in ("cancelled", "expired"):
                    break
        self._out["not_confirmed"][status] = self._out["not_confirmed"].get(status, 0) + 1


async def run(config: dict[str, Any]) -> dict[str, Any]:
    tokens: list[str] = config["tokens"]
    clients = len(tokens)
    view = SeatView(config["rows"])
    rng = random.Random(config.get("seed", 7))
    # Several shows on sale at once: fan i asks for show i mod n (each its own seat view).
    show_ids: list[str] = config.get("show_ids") or [config["show_id"]]
    views = [view] + [SeatView(config["rows"]) for _ in show_ids[1:]]
    fans = [
        Fan(
            views[i % len(show_ids)],
            random.Random(rng.random()),
            float(config.get("chosen_ratio", 0.5)),
            int(config.get("max_quantity", 4)),
            _optional_int(config.get("max_tickets_per_customer")),
        )
        for i in range(clients)
    ]
    out: dict[str, Any] = {
        "latencies": [],
        "held_latencies": [],
        "statuses": {},
        "kinds": {},
        "by_mode": {"chosen": {}, "best": {}},
        "holds": [],
        "confirmed": [],
        "not_confirmed": {},
    }
    # One connection per fan (a shared httpx pool of 200 connections costs httpx far more CPU
    # per request than the server spends on it).
    timeout = float(config.get("timeout", 30.0))
    kind = RawConnection if config.get("client", "httpx") == "raw" else HttpxConnection
    https: list[Connection] = [kind(config["url"], timeout) for _ in range(clients)]
    try:
        # Open every connection before the clock starts (both designs get the same warm start).
        await asyncio.gather(*(http.request("GET", "/health") for http in https))
        stops = {show: asyncio.Event() for show in show_ids}  # one fan saw it sold out
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        out["started_at"] = time.time()
        deadline = t0 + float(config.get("max_seconds", 150.0))
        share = float(config.get("pay_share", 0.0))
        paying = {i for i in range(clients) if share > 0 and int(i * share) != int((i + 1) * share)}
        payers = {
            i: Payer(kind(config["url"], timeout), config["payment_method"], out, deadline)
            for i in paying
        }
        await asyncio.gather(
            *(
                _client(http, token, fan, show, t0, out, stops[show], deadline, payers.get(i))
                for i, (http, token, fan) in enumerate(zip(https, tokens, fans, strict=True))
                for show in [show_ids[i % len(show_ids)]]
            )
        )
        elapsed = time.perf_counter() - t0
        await asyncio.gather(*(t for p in payers.values() for t in p.tasks))
        await asyncio.gather(*(p.close() for p in payers.values()))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await asyncio.gather(*(http.close() for http in https))
    out["seconds"] = elapsed
    out["timed_out"] = time.perf_counter() >= deadline
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out["loadgen_cpu_seconds"] = cpu
    out["loadgen_cores"] = cpu / elapsed if elapsed else 0.0
    out["sold_out_seen"] = any(f.sold_out for f in fans)
    out["clients_capped"] = sum(1 for f in fans if f.capped)
    return out


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(run(config))
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
