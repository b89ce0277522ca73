"""`ticketblitz bench checkin` at a small size: both designs admit every ticket exactly once
(figures of speed are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.test_cli import run_cli

pytestmark = pytest.mark.integration


def test_the_checkin_benchmark_admits_every_ticket_once_with_both_designs():
    result = run_cli(
        "bench",
        "checkin",
        "--tickets",
        "300",
        "--gates",
        "4",
        "--rescans",
        "0.3",
        "--per-booking",
        "50",
    )

    assert result.returncode == 0, result.stderr
    assert "checkin: scans/s ours" in result.stdout
    written = re.search(r"results: (\S+\.json)", result.stdout)
    assert written is not None, result.stdout
    results = json.loads(Path(written.group(1)).read_text())
    assert results["benchmark"] == "checkin"
    assert (results["double_admissions"], results["baseline_double_admissions"]) == (0, 0)
    [round_] = results["rounds"]
    for design in ("ours", "baseline"):
        figures = round_[design]
        assert figures["tickets"] == 300
        assert figures["tickets_admitted"] == 300
        assert figures["answers"]["admitted"] == 300
        assert figures["scans"] == 300 + figures["answers"].get("already-admitted", 0)
        assert figures["answers"].get("already-admitted", 0) > 0  # rescans were refused
        assert figures["stored"]["ok"] is True
    assert round_["ours"]["stored"]["admitted_events"] == 300
    assert round_["ours"]["scans"] == round_["baseline"]["scans"]  # the same plan
