"""Accounts and tokens: register, log in."""

from __future__ import annotations

import math
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, EmailStr, Field

from commands.accounts import InvalidCredentialsError
from commands.models import RegisterAccount
from commands.text import SafeLine
from domain.account import Account
from domain.ids import account_id_for
from http_shell.container import Container
from http_shell.deps import ContainerDep, client_address, enforce_rate_limit, limit_key
from http_shell.problems import ProblemError

router = APIRouter(prefix="/auth", tags=["auth"])


class AccountCreate(BaseModel):
    email: EmailStr
    password: Annotated[str, Field(min_length=8, max_length=128)]
    name: Annotated[SafeLine, Field(min_length=1, max_length=100)]


class AccountCreated(BaseModel):
    account_id: UUID
    position: int


class TokenRequest(BaseModel):
    email: EmailStr
    password: Annotated[str, Field(min_length=1, max_length=128)]


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=AccountCreated)
async def register(
    body: AccountCreate, container: ContainerDep, request: Request
) -> AccountCreated:
    settings = container.settings
    where = limit_key(client_address(request))
    enforce_rate_limit(container, f"register:{where}", settings.rate_limit_register_per_minute)
    command = RegisterAccount(email=body.email, password=body.password, name=body.name)
    registered = await run_in_threadpool(container.accounts.register, command)
    return AccountCreated(account_id=registered.account_id, position=registered.position)


@router.post(
    "/token",
    response_model=TokenPublic,
    responses={
        401: {
            "description": "`invalid-credentials` (unknown e-mail or wrong password), or "
            "`account-deactivated` (right password, but an admin deactivated the account)"
        },
        429: {"description": "`rate-limited`: login throttling (see Retry-After)"},
    },
)
async def issue_token(body: TokenRequest, container: ContainerDep, request: Request) -> TokenPublic:
    """Log in: a bearer token for the account (valid until it expires, the password is
    changed or the account is deactivated)."""
    address = client_address(request)
    account = await run_in_threadpool(log_in, container, body.email, body.password, address)
    token = container.tokens.issue(account.id, account.role, account.session_generation)
    return TokenPublic(access_token=token, expires_in=container.tokens.ttl_seconds)


def log_in(container: Container, email: str, password: str, address: str) -> Account:
    """Check credentials behind login throttling that slows a password guesser down without
    locking the owner out:
    - every attempt counts against its address (`rate_limit_login_per_minute`);
    - failures count against the (e-mail, address) pair (`rate_limit_login_pair_per_minute`):
      a guesser at one address is slowed down, nobody else;
    - failures count against the e-mail (`rate_limit_login_account_per_hour`, a slower
      ceiling for guessers who spread over many addresses), which blocks only addresses the
      account has not logged in from successfully (kept `login_known_address_days`).
    A token is taken before the password is checked (concurrent guesses cannot overrun a
    bucket) and given back when the login succeeds."""
    settings = container.settings
    limiter = container.rate_limiter
    where = limit_key(address)
    account = account_id_for(email).hex
    enforce_rate_limit(container, f"login-ip:{where}", settings.rate_limit_login_per_minute)
    pair, pair_capacity = f"login-pair:{account}:{where}", settings.rate_limit_login_pair_per_minute
    ceiling = f"login-account:{account}"
    ceiling_capacity = settings.rate_limit_login_account_per_hour
    known = limiter.is_known_address(account, where)
    _throttle(limiter.take(pair, pair_capacity, 60.0), "from this address")
    if not known:
        wait = limiter.take(ceiling, ceiling_capacity, 3600.0)
        if wait is not None:
            limiter.give_back(pair, pair_capacity)
            _throttle(wait, "from addresses it has not logged in from before")
    try:
        found = container.accounts.authenticate(email, password)
    except InvalidCredentialsError:
        if known:  # counts towards the ceiling, which never blocks a known address
            limiter.take(ceiling, ceiling_capacity, 3600.0)
        raise
    limiter.reset(pair)
    if not known:
        limiter.give_back(ceiling, ceiling_capacity)
    limiter.remember_address(account, where, settings.login_known_address_days * 86_400)
    return found


def _throttle(wait: float | None, where: str) -> None:
    if wait is not None:
        raise ProblemError(
            429,
            "rate-limited",
            f"too many failed logins for this account {where}; try again later",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
