"""Cookie sessions for the pages, issued from the same accounts as the API's tokens.

The cookie holds a token of the same TokenService as the API (signed, expiring, naming the
account and its session generation `gen`): like a bearer token, it is checked against the
account as it is now at every page view, so a demoted, deactivated or password-changed
account's session ends at once. The cookie is HttpOnly (no script reads it), SameSite=Lax and
Secure when the request came over TLS (directly, or per X-Forwarded-Proto from a trusted
proxy). A session older than half its life is renewed on the next page view (sliding)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import UTC, datetime
from ipaddress import ip_address
from urllib.parse import quote

import jwt
from fastapi import Request
from starlette.responses import Response

from domain.account import Account
from http_shell.container import Container
from infra.tokens import InvalidTokenError

SESSION_COOKIE = "tb_session"
ORGANISER_ROLES = ("organizer", "admin")
DOOR_ROLES = ("door", "organizer", "admin")


class PageError(Exception):
    """A page that cannot be shown: `web.app` renders it as an HTML page (never JSON)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class LoginRequired(Exception):
    """No session (or a dead one): `web.app` redirects to /login?next=<this page>."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def is_secure(request: Request) -> bool:
    """Over TLS: the request's own scheme, or X-Forwarded-Proto from a trusted proxy only."""
    if request.url.scheme == "https":
        return True
    try:
        peer = ip_address(request.client.host) if request.client else None
    except ValueError:
        return False
    trusted = container_of(request).settings.trusted_proxies
    if peer is None or not any(peer.version == n.version and peer in n for n in trusted):
        return False
    proto = request.headers.get("x-forwarded-proto", "")
    return proto.split(",")[-1].strip().lower() == "https"


async def page_account(request: Request) -> Account | None:
    """The signed-in account as it is now, or None (no cookie, a bad or expired one, or an
    account that no longer accepts the session). Read once per request."""
    if hasattr(request.state, "page_account"):
        cached: Account | None = request.state.page_account
        return cached
    account = await _load_account(request)
    request.state.page_account = account
    return account


async def _load_account(request: Request) -> Account | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    container = container_of(request)
    try:
        claimed = container.tokens.verify(token)
    except InvalidTokenError:
        return None
    account = await asyncio.to_thread(container.accounts.standing, claimed.account_id)
    if account is None or not account.accepts_session(claimed.generation):
        return None
    if _past_half_life(token, container.tokens.ttl_seconds):
        request.state.renew_session = container.tokens.issue(
            account.id, account.role, account.session_generation
        )
    return account


def _past_half_life(token: str, ttl_seconds: int) -> bool:
    # The signature was verified just before; only `iat` is read here.
    issued = jwt.decode(token, options={"verify_signature": False}).get("iat")
    if not isinstance(issued, int):
        return True
    return datetime.now(UTC).timestamp() - issued > ttl_seconds / 2


async def require_account(request: Request, roles: Collection[str] = ()) -> Account:
    """The signed-in account, else LoginRequired (a redirect to the login page); with `roles`,
    a PageError 403 when the account's current role is not one of them."""
    account = await page_account(request)
    if account is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    if roles and account.role not in roles:
        raise PageError(403, "Not for this account", "This page is not available to you.")
    return account


def login_url(next_url: str) -> str:
    return "/login?next=" + quote(next_url, safe="/")


def safe_next(next_url: str | None) -> str:
    """Where to go after logging in: a path of this site only (no open redirect)."""
    if not next_url or not next_url.startswith("/") or next_url.startswith(("//", "/\\")):
        return "/"
    return next_url


def start_session(request: Request, response: Response, account: Account) -> None:
    token = container_of(request).tokens.issue(account.id, account.role, account.session_generation)
    set_session_cookie(request, response, token)


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=container_of(request).tokens.ttl_seconds,
        path="/",
        httponly=True,
        secure=is_secure(request),
        samesite="lax",
    )


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
