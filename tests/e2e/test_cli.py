"""`ticketblitz` as an operator runs it: `up` with the embedded stack, and its errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path

import httpx
import pytest

from tests.e2e.process_support import wait_healthy
from ticketblitz.demo import DEMO_CUSTOMER
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "ticketblitz")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETBLITZ_")}
    env.update(extra)
    return env


@contextmanager
def running_up(data_dir: Path, port: int) -> Iterator[str]:
    process = subprocess.Popen(
        [CLI, "up", "--demo", "--port", str(port), "--data-dir", str(data_dir)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base, 60, "ticketblitz up")
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, process.stdout.read() if process.stdout else ""


def demo_login(base: str) -> dict:
    token = httpx.post(
        base + "/api/v1/auth/token",
        json={"email": DEMO_CUSTOMER[0], "password": DEMO_CUSTOMER[1]},
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_two_stacks_side_by_side_and_data_survives_a_restart():
    with (
        tempfile.TemporaryDirectory(prefix="tbup", dir="/tmp") as one,
        tempfile.TemporaryDirectory(prefix="tbup", dir="/tmp") as two,
    ):
        first_port, second_port = free_port(), free_port()
        hold = {"show_id": demo_show_id(), "seats": ["A-1-1"]}
        with (
            running_up(Path(one), first_port) as first,
            running_up(Path(two), second_port) as second,
        ):
            booked = httpx.post(first + "/api/v1/bookings", headers=demo_login(first), json=hold)
            assert booked.status_code == 201, booked.text
            # The second stack is independent: the same seat is free there.
            other = httpx.post(second + "/api/v1/bookings", headers=demo_login(second), json=hold)
            assert other.status_code == 201, other.text
        with running_up(Path(one), first_port) as again:
            retry = httpx.post(again + "/api/v1/bookings", headers=demo_login(again), json=hold)
            assert retry.status_code == 409  # the hold made before the restart is still there
            assert retry.json()["seats"] == ["A-1-1"]


def demo_show_id() -> str:
    from uuid import uuid5

    from domain.ids import TICKETBLITZ_NAMESPACE

    return str(uuid5(TICKETBLITZ_NAMESPACE, "demo-show:Blue Note Nights"))


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


def test_serve_without_a_database_is_a_one_line_error():
    result = run_cli("serve", "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "TICKETBLITZ_DATABASE_URL" in result.stderr


def test_up_outside_demo_mode_needs_a_jwt_secret():
    with tempfile.TemporaryDirectory(prefix="tbup", dir="/tmp") as data:
        result = run_cli("up", "--port", str(free_port()), "--data-dir", data)
    assert result.returncode == 2
    assert "TICKETBLITZ_JWT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_reported():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("up", "--demo", "--port", str(port), "--data-dir", "/tmp/unused-tb")
    assert result.returncode == 2
    assert "already in use" in result.stderr


def test_invalid_settings_are_named():
    result = run_cli("serve", TICKETBLITZ_HOLD_MINUTES="-1")
    assert result.returncode == 2
    assert "hold_minutes" in result.stderr


@pytest.mark.parametrize("command", [["projections", "status"], ["workers"], ["audit", "seal"]])
def test_an_unreachable_database_is_a_one_line_error(command: list[str]):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    result = run_cli(*command, TICKETBLITZ_DATABASE_URL=dead)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("ticketblitz: error:")
    assert result.stderr.strip().count("\n") == 0, result.stderr


def test_version_prints_the_installed_version_and_nothing_else():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ticketblitz {package_version('ticketblitz')}"
    assert result.stderr == ""


def test_mail_lists_and_shows_the_caught_e_mails():
    from email.message import EmailMessage

    from ticketblitz.stack.smtp import Mailbox

    with tempfile.TemporaryDirectory(prefix="tbmail", dir="/tmp") as data:
        assert run_cli("mail", "list", "--data-dir", data).returncode == 2  # none caught yet
        for n, to in enumerate(["ann@example.com", "bob@example.com", "ann@example.com"]):
            message = EmailMessage()
            message["Date"], message["To"] = f"Sat, 05 Dec 2026 10:0{n}:00 +0000", to
            message["Subject"] = f"Your tickets {n}"
            message.set_content(f"Hello number {n}")
            message.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="t.pdf")
            Mailbox(Path(data) / "mail").deliver(bytes(message))

        listed = run_cli("mail", "list", "--to", "ann@", "--data-dir", data)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert [line.split()[0] for line in lines] == ["1", "3"]
        assert "ann@example.com" in lines[1] and lines[1].endswith("Your tickets 2")

        shown = run_cli("mail", "show", "2", "--data-dir", data)
        assert shown.returncode == 0, shown.stderr
        assert "To: bob@example.com" in shown.stdout and "Hello number 1" in shown.stdout
        assert "[attachment] t.pdf (application/pdf)" in shown.stdout

        missing = run_cli("mail", "show", "9", "--data-dir", data)
        assert missing.returncode == 2 and missing.stderr.count("\n") == 1
        assert "there are 3 e-mails" in missing.stderr


def test_a_second_up_on_the_same_data_dir_is_refused_and_commands_find_the_running_servers():
    with tempfile.TemporaryDirectory(prefix="tbup", dir="/tmp") as data:
        with running_up(Path(data), free_port()):
            recorded = json.loads((Path(data) / "endpoints.json").read_text())
            assert recorded["kafka_bootstrap"] and recorded["database_url"]
            second = run_cli("up", "--port", str(free_port()), "--data-dir", data)
            assert second.returncode == 2
            assert second.stderr.count("\n") == 1
            assert f"in use by `ticketblitz up` (process {recorded['pid']})" in second.stderr
            # The broker's port changes at every start: the recorded one is found.
            status = run_cli("recommender", "status", "--data-dir", data)
            assert status.returncode == 0, status.stderr
            assert "Kafka:" not in status.stdout  # no Kafka error line
        assert not (Path(data) / "endpoints.json").exists()  # gone with the stack
