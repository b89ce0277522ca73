"""`ticketblitz bench queue` at a small size: every fan joins once (joining again gives the same
token), the positions at the opening are a permutation, the order is unrelated to arrival
(fairness), and the fans let in per minute of the benchmark's clock are the rate (counts and
orders; figures of speed are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_cli import CLI, clean_env

pytestmark = pytest.mark.integration


def test_the_queue_benchmark_checks_joins_fairness_and_rate():
    args = ["--joins", "300", "--rate", "60", "--minutes", "4", "--clients", "8"]
    # Its own embedded stack starts and stops: more than run_cli's minute on a busy machine.
    result = subprocess.run(
        [CLI, "bench", "queue", *args], env=clean_env(), capture_output=True, text=True, timeout=600
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "queue joins over HTTP" in result.stdout
    written = re.search(r"results: (\S+\.json)", result.stdout)
    assert written is not None, result.stdout
    results = json.loads(Path(written.group(1)).read_text())
    assert results["benchmark"] == "queue"
    assert results["checks"] == {
        "all_joined": True,
        "rejoins_same_token": True,
        "positions_are_a_permutation": True,
        "fair": True,
        "rate_within_5_percent": True,
        "baseline_all_joined": True,
    }
    assert results["joins"] == 300 and results["baseline_joins"] == 300
    assert results["admitted_per_minute"] == [60, 60, 60, 60]
    assert abs(results["fairness_rho"]) < results["fairness_bound"]
    assert results["baseline_rho"] > 0.99  # first come, first served (as answered)
