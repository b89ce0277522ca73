"""A newcomer without internet: `/api` says where to go (`/` is the web's home page), `/docs`
and `/redoc` load every asset from this server (no CDN), and the OpenAPI document they render
is there."""

from __future__ import annotations

import re
from importlib.metadata import version as package_version

import httpx
import pytest

pytestmark = pytest.mark.integration

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""")


@pytest.fixture(scope="session")
def root(base_url: str) -> str:
    return base_url.removesuffix("/api/v1")


def assets_of(html: str) -> list[str]:
    return [a or b for a, b in ASSET.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_docs_load_only_this_servers_files(root: str, page: str):
    with httpx.Client(base_url=root, timeout=30) as client:
        answer = client.get(page)
        assert answer.status_code == 200
        assert "text/html" in answer.headers["content-type"]
        assets = assets_of(answer.text)
        assert any(a.endswith(".js") for a in assets), assets
        assert "/openapi.json" in answer.text
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            fetched = client.get(asset)
            assert fetched.status_code == 200, asset
            assert len(fetched.content) > 0


def test_api_says_where_the_docs_and_the_api_are(root: str):
    answer = httpx.get(root + "/api", timeout=30)
    assert answer.status_code == 200
    home = answer.json()
    assert home["name"] == "TicketBlitz"
    assert home["version"] == package_version("ticketblitz")
    for link in ("docs", "redoc", "openapi", "health"):
        assert httpx.get(root + home[link], timeout=30).status_code == 200, link
