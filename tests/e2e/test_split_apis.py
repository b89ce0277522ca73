"""The write and read APIs can run as separate processes (compose.yaml does)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from http_shell.container import Container
from ticketblitz.web import create_app


def routes_of(app) -> set[tuple[str, str]]:
    """What the app documents (and so serves) under /api/v1."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if path.startswith("/api/v1")
    }


def test_each_api_serves_only_its_side(container: Container):
    write_only = routes_of(create_app(container, ("write",)))
    read_only = routes_of(create_app(container, ("read",)))
    both = routes_of(create_app(container))
    assert ("POST", "/api/v1/bookings") in write_only - read_only
    assert ("GET", "/api/v1/bookings/{booking_id}") in read_only - write_only
    assert write_only | read_only == both
    with TestClient(create_app(container, ("read",))) as client:
        refused = client.post("/api/v1/bookings", json={})
        assert refused.status_code == 404
        assert refused.headers["content-type"].startswith("application/problem+json")
