"""A newcomer's first hour, from a checkout and the README alone: `make run`, the API docs in a
browser without internet, the README's walkthrough as it is written (log in, book, pay with the
test card, tickets, the confirmation e-mail), then `make stop` and `make reset`.

The checkout is a scratch directory with the project's Makefile and the test run's .venv (so
`make run` starts from nothing but its own data directory)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.process_support import wait_healthy
from tests.e2e.test_cli import clean_env
from ticketblitz.http_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def walkthrough() -> str:
    """The README's walkthrough block (the bash block after `<!-- walkthrough -->`)."""
    readme = (REPO / "README.md").read_text()
    found = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```", readme, re.S)
    assert found, "the README has no walkthrough block"
    return found.group(1)


def make(checkout: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=checkout,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout whose .venv is installed: the Makefile, what the venv was built from (older
    than it, so make does not build it again) and the venv itself."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, tmp_path / name)
            os.utime(tmp_path / name, (0, 0))
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    return tmp_path


@pytest.fixture
def running(checkout: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=checkout,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base, 120, "make run")
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_a_newcomer_runs_it_reads_the_docs_offline_books_finds_the_mail_stops_and_resets(
    checkout: Path, running: tuple[str, subprocess.Popen[str]], tmp_path: Path
):
    base, process = running

    # The API docs in a browser with no internet: every request elsewhere is refused.
    elsewhere: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()

        def only_here(route):  # type: ignore[no-untyped-def]
            if route.request.url.startswith(base):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        page.route("**/*", only_here)
        page.goto(base + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        title = page.inner_text(".swagger-ui .info .title")
        operations = page.locator(".opblock").count()
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
        browser.close()
    assert "TicketBlitz" in title
    assert operations >= 40  # every operation of the document is rendered
    assert elsewhere == []
    assert (tmp_path / "docs.png").stat().st_size > 10_000

    # The README's walkthrough, as written, against this stack's port.
    script = walkthrough().replace("http://127.0.0.1:8080", base)
    walked = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=checkout,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert walked.returncode == 0, walked.stdout + walked.stderr
    lines = walked.stdout.splitlines()
    assert re.fullmatch(r"booking [0-9a-f-]{36}: confirmed", lines[0]), walked.stdout
    assert lines[1].startswith("TB1."), walked.stdout  # the first ticket's signed secret
    assert "fan@demo.ticketblitz.dev" in lines[2] and "confirmed" in lines[2].lower(), lines

    # Stop and reset, as the README says.
    stopped = make(checkout, "stop")
    assert stopped.returncode == 0 and "stopping ticketblitz up" in stopped.stdout
    process.wait(timeout=60)
    assert make(checkout, "reset").returncode == 0
    assert not (checkout / ".ticketblitz").exists()
    assert "no ticketblitz up runs" in make(checkout, "stop").stdout
