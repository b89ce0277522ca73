"""Rendering pages: Jinja2 templates with autoescaping everywhere, the security headers
(a Content-Security-Policy without inline scripts), the session and CSRF cookies made during
the request, and filters that show what people read (money, times on the venue's clock)
rather than internal values."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from commands.venue_time import local_time
from domain.money import money
from web.csrf import csrf_field, set_csrf_cookie
from web.seatmap import STATUS_WORDS
from web.session import (
    DOOR_ROLES,
    ORGANISER_ROLES,
    container_of,
    page_account,
    set_session_cookie,
)

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["csrf_field"] = csrf_field
templates.globals["status_words"] = STATUS_WORDS
templates.filters["money"] = lambda cents, currency: money(int(cents), str(currency))


def _when(moment: datetime | str | None, zone: str | None = None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return local_time(moment, zone)


templates.filters["when"] = _when


def stripe_origin(request: Request) -> str | None:
    """The origin serving Stripe.js (the emulator's stand-in in a test or demo stack)."""
    base = container_of(request).settings.stripe_api_base
    if not base:
        return None
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def stripe_js_url(request: Request) -> str:
    """Stripe.js: the emulator's stand-in when one is configured, else the real one."""
    origin = stripe_origin(request)
    return f"{origin}/js.stripe.com/v3/" if origin else "https://js.stripe.com/v3/"


def content_security_policy(request: Request) -> str:
    stripe = stripe_origin(request) or "https://js.stripe.com https://api.stripe.com"
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' {stripe}",
            f"connect-src 'self' {stripe}",
            f"frame-src {stripe}",
            "img-src 'self' data:",
            "style-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def secure_headers(request: Request, response: Response) -> Response:
    """The headers every page answer carries, and the cookies made while answering."""
    response.headers["Content-Security-Policy"] = content_security_policy(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    set_csrf_cookie(request, response)
    renewed = getattr(request.state, "renew_session", None)
    if renewed:
        set_session_cookie(request, response, renewed)
    return response


async def render(
    request: Request, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page `template` (under web/templates) with `context`; every template also has
    `request`, `account` (the signed-in account or None) and `nav` (which links to show)."""
    account = await page_account(request)
    role = account.role if account is not None else None
    context.setdefault("account", account)
    context["request"] = request
    context["nav"] = {
        "organiser": role in ORGANISER_ROLES,
        "door": role in DOOR_ROLES,
        "fan": account is not None,
    }
    context["stripe_js"] = stripe_js_url(request)
    html = templates.get_template(template).render(context)
    response = HTMLResponse(html, status_code=status_code)
    return secure_headers(request, response)  # type: ignore[return-value]


def redirect(request: Request, url: str) -> Response:
    """See other: after a form post, the page to show (POST-redirect-GET)."""
    return secure_headers(request, RedirectResponse(url, status_code=303))
