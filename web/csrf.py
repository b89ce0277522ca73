"""CSRF protection for every form post: a random token kept in an HttpOnly cookie of its own
(SameSite=Lax) and repeated in each form as a hidden field (double submit). Another site can
make a browser post a form here, but cannot read or set our cookie, so it cannot know the
token. The token is renewed when someone logs in or out. A post whose `Origin` header names
another site is refused as well.

`read_form` parses application/x-www-form-urlencoded itself (small, strict: at most
FORM_BYTES) and leaves multipart to Starlette."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from markupsafe import Markup, escape
from starlette.datastructures import UploadFile
from starlette.responses import Response

from web.session import PageError, is_secure

CSRF_COOKIE = "tb_csrf"
CSRF_FIELD = "csrf_token"
FORM_BYTES = 64 * 1024
FormData = Mapping[str, str | UploadFile]


def csrf_token(request: Request) -> str:
    """This browser's token (a new one is made, and set by `render`, if it has none)."""
    if hasattr(request.state, "csrf_token"):
        token: str = request.state.csrf_token
        return token
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf_token = token
    request.state.csrf_token = token
    return token


def renew_csrf(request: Request) -> None:
    """A new token from this request on (at log in and log out)."""
    token = secrets.token_urlsafe(32)
    request.state.csrf_token = token
    request.state.new_csrf_token = token


def csrf_field(request: Request) -> Markup:
    """The hidden form field templates put in every form (`{{ csrf_field(request) }}`)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        CSRF_FIELD, escape(csrf_token(request))
    )


def set_csrf_cookie(request: Request, response: Response) -> None:
    """Called by `render` (and redirects after a form): sets a token made during the request."""
    token = getattr(request.state, "new_csrf_token", None)
    if token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path="/",
            httponly=True,
            secure=is_secure(request),
            samesite="lax",
        )


async def read_form(request: Request) -> dict[str, str | UploadFile]:
    """The posted form: url-encoded (parsed here) or multipart (Starlette's parser)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form()
        return {key: value for key, value in form.items()}
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "Unsupported form", "This form was sent in a way we do not accept.")
    body = await request.body()
    if len(body) > FORM_BYTES:
        raise PageError(413, "Form too large", "This form is too large.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "Unreadable form", "This form could not be read.") from None
    return dict(pairs)


def check_csrf(request: Request, form: FormData) -> None:
    """Refuse (403 page) a post without this browser's token, or from another site."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise _refused()
    sent = form.get(CSRF_FIELD)
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not isinstance(sent, str) or len(expected) < 32:
        raise _refused()
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise _refused()


def _refused() -> PageError:
    return PageError(
        403,
        "Form expired",
        "This form could not be accepted (it may have expired). Please go back, reload the "
        "page and try again.",
    )
