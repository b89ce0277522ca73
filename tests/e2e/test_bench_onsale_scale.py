"""`ticketblitz bench onsale --workers 2 --shows 2 --pay-share 0.2` at a tiny size: every show of
every round sold out with no seat sold twice, by our API in 1 and in 2 processes and by the
seed-style baseline, and every paying fan's booking read back confirmed (figures of speed are
the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_cli import CLI, clean_env

pytestmark = pytest.mark.integration

SEATS, SHOWS = 40, 2


def test_onsale_in_two_processes_over_two_shows_with_payers_sells_each_seat_once():
    argv = [
        CLI,
        "bench",
        "onsale",
        "--workers",
        "2",
        "--shows",
        str(SHOWS),
        "--pay-share",
        "0.2",
        "--seats",
        str(SEATS),
        "--seats-per-row",
        "10",
        "--clients",
        "10",
        "--rounds",
        "1",
        "--no-read-model",
    ]
    # Its own embedded servers and three sell-outs: longer than run_cli's minute.
    result = subprocess.run(argv, env=clean_env(), capture_output=True, text=True, timeout=900)

    assert result.returncode == 0, result.stderr[-3000:]
    written = re.search(r"results: (\S+\.json)", result.stdout)
    assert written is not None, result.stdout
    results = json.loads(Path(written.group(1)).read_text())
    assert results["benchmark"] == "onsale"
    assert results["process_counts"] == [1, 2]
    assert results["zero_oversell"] is True
    [round_] = results["rounds"]
    runs = [round_["ours"]["1"], round_["ours"]["2"], round_["baseline"]]
    for run in runs:
        assert len(run["shows"]) == SHOWS
        checks = run["oversell_check"]["shows"]
        assert [c["ok"] for c in checks] == [True] * SHOWS
        assert [c["free_left"] for c in checks] == [0] * SHOWS  # each show sold out
        assert sum(c["successes_answered"] for c in checks) == run["holds"]
    for processes in ("1", "2"):
        ours = round_["ours"][processes]
        assert [c["double_booked_seats"] for c in ours["oversell_check"]["shows"]] == [0, 0]
        assert [c["held"] for c in ours["oversell_check"]["shows"]] == [SEATS] * SHOWS
        # two of the ten fans paid with each of their holds: each read back confirmed
        assert ours["not_confirmed"] == {}
        assert len(ours["confirmed"]) >= 2
    confirmed = results["hold_to_confirmed"]
    assert confirmed["1"]["count"] == len(round_["ours"]["1"]["confirmed"])
