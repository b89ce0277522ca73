"""What-if A/B: the onsale benchmark against several variants of our server, alternating rounds
on one stack so that the machine's noise hits every variant alike (bench/whatif.py).

    .venv/bin/python -m bench.whatif_ab [--seats 10000] [--reps 3] [--client raw|httpx]
        [--variant as-is] [--variant async-deps+no-body-middleware] [--variant no-snapshots] ...

A variant is "+"-joined what-ifs. Each variant gets its own app over the same container (app
what-ifs) and its own shows (snapshot what-ifs apply to writers created for them). Reports per
variant the median holds/s, p99 and, the figure least sensitive to other load on the machine,
the server's CPU per request (this process's CPU time / requests).
"""

from __future__ import annotations

import argparse
import statistics
import threading
from typing import Any

import uvicorn

from bench import whatif
from bench.common import (
    Layout,
    SaveProbe,
    bench_container,
    bench_stack,
    check_share,
    fmt,
    load_average,
    machine_info,
    print_table,
    register_customers,
    schedule_hot_show,
    verify_inventory,
)
from bench.loadgen_run import run_loadgen
from bench.onsale import uvicorn_flavour
from bench.report import save, writer_stats
from ticketblitz.http_server import KEEP_ALIVE_SECONDS, BackgroundServer
from ticketblitz.web import create_app


class FlavourServer(BackgroundServer):
    """BackgroundServer with an explicit HTTP parser and event loop (not uvicorn's "auto", which
    would pick httptools/uvloop for every variant as soon as they are importable)."""

    def __init__(self, app: Any, http: str = "h11", loop: str = "asyncio") -> None:
        super().__init__(app)
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            http=http,
            loop=loop,
            proxy_headers=False,  # as BackgroundServer: never trust loopback's X-Forwarded-For
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)


DEFAULT_VARIANTS = [
    "as-is",
    "async-deps",
    "no-body-middleware",
    "async-deps+no-body-middleware",
    "no-snapshots",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--client", choices=("httpx", "raw"), default="raw")
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    variants: list[str] = args.variant or DEFAULT_VARIANTS
    if (why := check_share(max(args.seats, 1000), args.clients)) is not None:
        parser.error(why)
    for v in variants:
        whatif.check([w for w in v.split("+") if w != "as-is"])
    layout = Layout.for_seats(args.seats)
    load_before = load_average()
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with bench_stack(redis=True) as stack:
        container = bench_container(stack)
        probe = SaveProbe().install(container.store)
        servers: dict[str, BackgroundServer] = {}
        try:
            for v in variants:
                app = create_app(container)
                whatif.apply_to_app(app, v.split("+"))
                if "uvicorn-standard" in v.split("+"):
                    servers[v] = FlavourServer(app, "httptools", "uvloop").start()
                else:
                    servers[v] = FlavourServer(app, "h11", "asyncio").start()
            machine = machine_info(stack.database_url)
            pm = stack.postmaster_pid()
            tokens = register_customers(container, args.clients)
            default_every = container.writers._snapshot_every

            def one(v: str, lay: Layout, seed: int) -> dict[str, Any]:
                container.writers._snapshot_every = default_every
                whatif.apply_to_container(container, v.split("+"))
                show_id = schedule_hot_show(container, lay)
                probe.reset()
                before = container.writers.stats()
                result = run_loadgen(
                    servers[v].url, tokens, show_id, lay, seed, 0.5, 90.0, pm, args.client
                )
                result["server"] = writer_stats(before, container.writers.stats())
                result["transactions"] = probe.summary()
                result["oversell_check"] = verify_inventory(
                    container, show_id, lay.seats, result.pop("_holds")
                )
                return result

            for v in variants:
                one(v, Layout.for_seats(1000), args.seed)  # warm-up
            for rep in range(args.reps):
                for v in variants if rep % 2 == 0 else list(reversed(variants)):
                    result = one(v, layout, args.seed + rep)
                    runs[v].append(result)
                    print(
                        f"  {v:<40} rep {rep + 1}: {result['holds_per_s']:>7,.0f} holds/s "
                        f"p99 {result['latency_all']['p99_ms']:>7,.0f} ms "
                        f"server {result['server_cpu_ms_per_request']:.2f} ms CPU/request",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()
            container.close()
    rows = []
    for v in variants:
        rs = runs[v]
        rows.append(
            [
                v,
                fmt(statistics.median(r["holds_per_s"] for r in rs)),
                fmt(statistics.median(r["latency_all"]["p99_ms"] for r in rs)),
                fmt(statistics.median(r["server_cpu_ms_per_request"] for r in rs), 2),
                fmt(statistics.median(r["loadgen_cpu_ms_per_request"] for r in rs), 2),
                "ok" if all(r["oversell_check"]["ok"] for r in rs) else "FAIL",
            ]
        )
    print_table(
        f"what-if A/B: {args.seats:,} seats, {args.clients} clients ({args.client} client), "
        f"median of {args.reps} alternating rounds",
        ["variant", "holds/s", "p99 ms", "server ms CPU/req", "loadgen ms CPU/req", "oversell"],
        rows,
    )
    machine["uvicorn"] = "h11 + asyncio unless the variant says uvicorn-standard"
    machine["httptools_uvloop_importable"] = uvicorn_flavour()
    save("whatif_ab", args, machine, load_before, {"variants": runs}, name="whatif")


if __name__ == "__main__":
    main()
