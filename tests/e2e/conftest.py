"""The whole system over HTTP: the real app served by uvicorn against the real servers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from http_shell.container import Container
from infra.settings import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, TEST_JWT_SECRET
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints
from ticketblitz.http_server import BackgroundServer
from ticketblitz.web import create_app


def settings_for_tests(endpoints: StackEndpoints, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": endpoints.database_url,
        "redis_url": endpoints.redis_url,
        "jwt_secret": TEST_JWT_SECRET,
        "admin_email": ADMIN_EMAIL,
        "admin_password": ADMIN_PASSWORD,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "rate_limit_booking_per_minute": 100_000,
        "rate_limit_login_per_minute": 100_000,
        "rate_limit_register_per_minute": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def container(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[Container]:
    built = bootstrap(settings_for_tests(endpoints, stack_dir / "app"))
    if built.read_side is not None:
        built.read_side.start_runners()  # as `ticketblitz up` does; stopped by close()
    yield built
    built.close()


@pytest.fixture(scope="session")
def base_url(container: Container) -> Iterator[str]:
    server = BackgroundServer(create_app(container)).start()
    yield server.url + "/api/v1"
    server.stop()


class Api:
    """A small client speaking the command API, for tests that read as user stories."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30)

    @property
    def server_url(self) -> str:
        """The server's own address, without the API's /api/v1."""
        return self.base_url.removesuffix("/api/v1")

    def token_for(self, email: str, password: str) -> str:
        r = self.http.post("/auth/token", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token

    def new_customer(self) -> dict[str, str]:
        email = f"fan-{uuid4().hex[:12]}@example.com"
        password = "correct horse battery"
        r = self.http.post(
            "/auth/register", json={"email": email, "password": password, "name": "Fan"}
        )
        assert r.status_code == 201, r.text
        token = self.token_for(email, password)
        return {
            "email": email,
            "account_id": r.json()["account_id"],
            "Authorization": f"Bearer {token}",
        }

    def new_account(self, role: str) -> dict[str, str]:
        """A fresh account with `role` (customer, organizer, door, admin): registered, given
        the role by the admin, then logged in again so its token is a fresh one."""
        email = f"{role}-{uuid4().hex[:12]}@example.com"
        password = "correct horse battery"
        r = self.http.post(
            "/auth/register", json={"email": email, "password": password, "name": role.title()}
        )
        assert r.status_code == 201, r.text
        account_id: str = r.json()["account_id"]
        if role != "customer":
            r = self.http.post(
                f"/admin/accounts/{account_id}/role", json={"role": role}, headers=self.admin()
            )
            assert r.status_code == 200, r.text
        token = self.token_for(email, password)
        return {"email": email, "account_id": account_id, "Authorization": f"Bearer {token}"}

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_for(ADMIN_EMAIL, ADMIN_PASSWORD)}"}

    def new_show(
        self, rows: int = 5, seats_per_row: int = 10, general: int = 0, open_sale: bool = True
    ) -> str:
        sections: list[dict[str, Any]] = [
            {
                "code": "A",
                "kind": "seated",
                "tier": "STD",
                "rows": [{"label": str(r), "seats": seats_per_row} for r in range(1, rows + 1)],
            }
        ]
        if general:
            sections.append({"code": "GA", "kind": "general", "tier": "FLOOR", "capacity": general})
        body = {
            "title": f"Night of Jazz {uuid4().hex[:6]}",
            "description": "Quartet, two sets.",
            "category": "jazz",
            "venue": "Blue Hall",
            "starts_at": "2027-03-01T20:00:00+01:00",
            "currency": "EUR",
            "price_tiers": [
                {"code": "STD", "price_cents": 4500},
                {"code": "FLOOR", "price_cents": 3000},
            ],
            "sections": sections,
        }
        return self.publish_show(body, open_sale)

    def publish_show(self, body: dict[str, Any], open_sale: bool = True) -> str:
        """The admin schedules the show `body` describes (and opens its sale); its id."""
        admin = self.admin()
        r = self.http.post("/shows", json=body, headers=admin)
        assert r.status_code == 201, r.text
        show_id: str = r.json()["show_id"]
        if open_sale:
            r = self.http.post(f"/shows/{show_id}/open-sale", headers=admin)
            assert r.status_code == 200, r.text
        return show_id


@contextmanager
def served(container: Container) -> Iterator[Api]:
    """The app over `container`, served by uvicorn on a free port, and a client of it."""
    server = BackgroundServer(create_app(container)).start()
    api = Api(server.url + "/api/v1")
    try:
        yield api
    finally:
        api.http.close()
        server.stop()


@pytest.fixture(scope="session")
def api(base_url: str) -> Iterator[Api]:
    client = Api(base_url)
    yield client
    client.http.close()
