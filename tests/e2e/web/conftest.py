"""Browser tests reuse the end-to-end fixtures (real servers, the session container)."""

from __future__ import annotations

from tests.e2e.conftest import api, base_url, container  # noqa: F401  (fixtures)
