"""Helpers for the read-side tests: a fresh database per test module (so positions and read
models start from zero), and snapshots of every read model for row-by-row comparisons."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from http_shell.container import Container
from projections.base import READ_SCHEMA
from projections.registry import PROJECTIONS
from tests.e2e.conftest import settings_for_tests
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints


@contextmanager
def container_on(database_url: str, data_dir: Path, **overrides: Any) -> Iterator[Container]:
    endpoints = StackEndpoints(database_url, None, None, None, None, None)
    container = bootstrap(settings_for_tests(endpoints, data_dir, **overrides))
    try:
        yield container
    finally:
        container.close()


def read_views() -> list[str]:
    return [view for kind in PROJECTIONS.values() for view in kind.views]


def snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read model (through the views, i.e. the active generation), sorted."""
    with psycopg.connect(database_url) as conn:
        return {
            view: sorted(
                conn.execute(
                    sql.SQL("SELECT * FROM {}").format(sql.Identifier(READ_SCHEMA, view))
                ).fetchall(),
                key=repr,
            )
            for view in read_views()
        }


def positions(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT g.projection, f.position FROM read.generations g "
            "JOIN follower_positions f ON f.name = g.follower WHERE g.state = 'active'"
        ).fetchall()
    return {name: int(position) for name, position in rows}


def generations(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT projection, generation FROM read.generations WHERE state = 'active'"
        ).fetchall()
    return {name: int(generation) for name, generation in rows}
