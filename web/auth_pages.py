"""Register, log in and log out with the pages' cookie session (web/session.py).

Logins are throttled like the API's (per address, and failures per e-mail and address), with
the same buckets, so switching between the API and the page gains a guesser nothing."""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from commands.accounts import AccountDeactivatedError, InvalidCredentialsError
from commands.errors import AccountExistsError
from commands.models import RegisterAccount
from domain.account import Account
from domain.ids import account_id_for
from http_shell.container import Container
from http_shell.deps import client_address, limit_key
from web.csrf import check_csrf, read_form, renew_csrf
from web.render import redirect, render
from web.session import container_of, end_session, safe_next, start_session

router = APIRouter()


class LoginRefused(Exception):
    """A login the page answers with a message (wrong password, throttled, deactivated)."""


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    return await render(request, "login.html", next=safe_next(next), email="", error=None)


@router.post("/login")
async def log_in(request: Request) -> Response:
    form = await read_form(request)
    check_csrf(request, form)
    email, password = str(form.get("email", "")).strip(), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    container = container_of(request)
    address = limit_key(client_address(request))
    try:
        account = await asyncio.to_thread(_checked_login, container, email, password, address)
    except LoginRefused as refused:
        return await render(
            request, "login.html", status_code=401, next=target, email=email, error=str(refused)
        )
    renew_csrf(request)
    response = redirect(request, target)
    start_session(request, response, account)
    return response


def _checked_login(container: Container, email: str, password: str, address: str) -> Account:
    if not email or not password or len(password) > 128 or len(email) > 320:
        raise LoginRefused("Please enter your e-mail and password.")
    settings, limiter = container.settings, container.rate_limiter
    if limiter.check(f"login-ip:{address}", settings.rate_limit_login_per_minute) is not None:
        raise LoginRefused("Too many attempts from here; please wait a minute.")
    pair = f"login-pair:{account_id_for(email).hex}:{address}"
    capacity = settings.rate_limit_login_pair_per_minute
    wait = limiter.take(pair, capacity, 60.0)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise LoginRefused(f"Too many failed logins; try again in {seconds} seconds.")
    try:
        account = container.accounts.authenticate(email, password)
    except InvalidCredentialsError:
        raise LoginRefused("That e-mail and password do not match an account.") from None
    except AccountDeactivatedError:
        raise LoginRefused("This account has been deactivated.") from None
    limiter.reset(pair)
    return account


@router.get("/register")
async def register_page(request: Request, next: str = "/") -> Response:
    return await render(
        request, "register.html", next=safe_next(next), email="", name="", error=None
    )


@router.post("/register")
async def register(request: Request) -> Response:
    form = await read_form(request)
    check_csrf(request, form)
    email, name = str(form.get("email", "")).strip(), str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    container = container_of(request)
    address = limit_key(client_address(request))

    async def again(error: str, status: int) -> Response:
        return await render(
            request,
            "register.html",
            status_code=status,
            next=target,
            email=email,
            name=name,
            error=error,
        )

    limit = container.settings.rate_limit_register_per_minute
    if container.rate_limiter.check(f"register:{address}", limit) is not None:
        return await again("Too many registrations from here; please wait a minute.", 429)
    try:
        command = RegisterAccount(email=email, password=password, name=name)
    except ValidationError as invalid:
        return await again(_first_problem(invalid), 422)
    try:
        await asyncio.to_thread(container.accounts.register, command)
        account = await asyncio.to_thread(container.accounts.authenticate, email, password)
    except AccountExistsError:
        return await again("An account with this e-mail exists already: log in instead.", 409)
    renew_csrf(request)
    response = redirect(request, target)
    start_session(request, response, account)
    return response


def _first_problem(invalid: ValidationError) -> str:
    field = str(invalid.errors()[0]["loc"][0]) if invalid.errors() else ""
    return {
        "email": "Please enter a valid e-mail address.",
        "password": "The password needs 8 to 128 characters.",
        "name": "Please enter your name (one line, up to 100 characters).",
    }.get(field, "Please check the form.")


@router.post("/logout")
async def log_out(request: Request) -> Response:
    form = await read_form(request)
    check_csrf(request, form)
    renew_csrf(request)
    response = redirect(request, "/")
    end_session(response)
    return response
