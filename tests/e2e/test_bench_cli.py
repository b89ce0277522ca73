"""`ticketblitz bench NAME [ARGS]`: each benchmark of bench/ from one command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.test_cli import run_cli

pytestmark = pytest.mark.integration


def test_a_benchmark_runs_with_its_own_arguments_and_writes_its_results():
    result = run_cli(
        "bench", "append", "--batches", "10", "--threads", "1", "--events", "300", "--seconds", "1"
    )

    assert result.returncode == 0, result.stderr
    assert "append: events/s" in result.stdout
    written = re.search(r"results: (\S+\.json)", result.stdout)
    assert written is not None, result.stdout
    results = json.loads(Path(written.group(1)).read_text())
    assert results["benchmark"] == "append"
    assert [(c["batch"], c["threads"]) for c in results["cases"]] == [(10, 1)]


def test_an_unknown_benchmark_is_a_one_line_error_naming_the_known_ones():
    result = run_cli("bench", "speed-of-light")

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "no benchmark 'speed-of-light'" in result.stderr
    assert "onsale" in result.stderr
