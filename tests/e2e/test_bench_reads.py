"""`ticketblitz bench reads` at a small size: every SSE client's events agree with the event log
(nothing lost, duplicated or out of order, each ends on the final seat map) and the seat-map
readers got answers from both designs (figures of speed are the benchmark's business)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_cli import CLI, clean_env

pytestmark = pytest.mark.integration
SMALL = ["--read-writes", "5", "--sse-clients", "20", "--rate", "40", "--writers", "4"]


def test_the_reads_benchmark_delivers_every_seat_change_to_every_sse_client_in_order():
    result = subprocess.run(
        [CLI, "bench", "reads", "--seats", "100", "--clients", "4", "--seconds", "2", *SMALL],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    written = re.search(r"results: (\S+\.json)", result.stdout)
    assert written is not None, result.stdout
    results = json.loads(Path(written.group(1)).read_text())
    assert results["benchmark"] == "reads"
    for design in ("ours", "baseline"):
        reads = results["reads"][design]
        assert reads["requests"] > 0 and reads["errors"] == {}
        assert set(reads["statuses"]) <= {"200", "304"}
    sse = results["sse"]
    verdict = sse["verdict"]
    assert sse["ok"] and sse["read_model_agrees_with_log"]
    assert sse["writer"]["sold_out"] and sse["writer"]["holds"] == sse["seats"] == 80
    assert verdict["clients"] == 20 and verdict["snapshots"] >= 20
    counts = ("lost", "duplicated", "out_of_order", "wrong", "available_wrong")
    assert [verdict[k] for k in counts] == [0] * len(counts)
    assert (verdict["not_caught_up"], verdict["final_mismatch"]) == (0, 0)
    # every client learned every seat change: 80 holds, 20 clients
    assert verdict["deliveries"] == 80 * 20
