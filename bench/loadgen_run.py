"""Running the load generator (bench/loadgen.py) in a process of its own, for the HTTP
benchmarks (`onsale` and its scale runs, `whatif_ab`): its settings in, its result plus the
server's CPU use out."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.clients import ROOT
from bench.common import TICKETS_PER_CUSTOMER, CpuMeter, Layout, latency_summary


def run_loadgen(
    url: str,
    tokens: list[str],
    show_id: UUID,
    layout: Layout,
    seed: int,
    chosen_ratio: float,
    max_seconds: float,
    postmaster: int | None = None,
    client: str = "httpx",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run bench/loadgen.py in its own process; its result plus this process's CPU use.
    `extra`: more of the load generator's settings (several shows, paying fans)."""
    config = {
        "url": url,
        "tokens": tokens,
        "show_id": str(show_id),
        "rows": layout.to_json(),
        "chosen_ratio": chosen_ratio,
        "max_quantity": 4,
        "max_tickets_per_customer": TICKETS_PER_CUSTOMER,
        "seed": seed,
        "timeout": 30.0,
        "max_seconds": max_seconds,
        "client": client,
        **(extra or {}),
    }
    with tempfile.TemporaryDirectory(prefix="tbl-", dir="/tmp") as tmp:
        config_path, result_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
        config_path.write_text(json.dumps(config))
        cpu = CpuMeter(postmaster).start()
        subprocess.run(
            [sys.executable, "-m", "bench.loadgen", str(config_path), str(result_path)],
            cwd=ROOT,
            check=True,
            timeout=max_seconds + 120,
        )
        used = cpu.stop()
        raw: dict[str, Any] = json.loads(result_path.read_text())
    holds = raw["holds"]
    seconds = raw["seconds"]
    # The run's throughput ends at its last success (clients drain 409s after the sell-out).
    active = max((h[2] for h in holds), default=seconds)
    result: dict[str, Any] = {
        "holds": len(holds),
        "tickets": sum(len(h[1]) for h in holds),
        "requests": len(raw["latencies"]),
        "seconds": seconds,
        "seconds_to_sold_out": active,
        "holds_per_s": len(holds) / active if active else 0.0,
        "requests_per_s": len(raw["latencies"]) / seconds if seconds else 0.0,
        "latency_all": latency_summary(raw["latencies"]),
        "latency_held": latency_summary(raw["held_latencies"]),
        "statuses": raw["statuses"],
        "answers": raw["kinds"],
        "answers_by_mode": raw["by_mode"],
        "conflicts_409": sum(v for k, v in raw["statuses"].items() if k == "409"),
        "sold_out_seen": raw["sold_out_seen"],
        "clients_capped": raw.get("clients_capped", 0),
        "timed_out": raw["timed_out"],
        "loadgen_cores": raw["loadgen_cores"],
        "loadgen_cpu_ms_per_request": 1000.0 * raw["loadgen_cpu_seconds"] / len(raw["latencies"])
        if raw["latencies"]
        else 0.0,
        "server_cpu_ms_per_request": 1000.0 * used["this_process_cpu_s"] / len(raw["latencies"])
        if raw["latencies"]
        else 0.0,
        "cpu": used,
    }
    result["_holds"] = [(h[0], h[1]) for h in holds]
    result["_hold_shows"] = [h[3] for h in holds]
    result["confirmed"] = raw["confirmed"]
    result["not_confirmed"] = raw["not_confirmed"]
    return result
