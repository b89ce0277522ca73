"""Accounts and tokens: register, log in."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, EmailStr, Field

from commands.models import RegisterAccount
from infra.http_deps import ContainerDep, client_address, enforce_rate_limit

router = APIRouter(prefix="/auth", tags=["auth"])


class AccountCreate(BaseModel):
    email: EmailStr
    password: Annotated[str, Field(min_length=8, max_length=128)]
    name: Annotated[str, Field(min_length=1, max_length=100)]


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
    enforce_rate_limit(
        container, f"register:{client_address(request)}", settings.rate_limit_register_per_minute
    )
    command = RegisterAccount(email=body.email, password=body.password, name=body.name)
    registered = await run_in_threadpool(container.accounts.register, command)
    return AccountCreated(account_id=registered.account_id, position=registered.position)


@router.post("/token", response_model=TokenPublic)
async def issue_token(body: TokenRequest, container: ContainerDep, request: Request) -> TokenPublic:
    per_minute = container.settings.rate_limit_login_per_minute
    enforce_rate_limit(container, f"login-ip:{client_address(request)}", per_minute)
    enforce_rate_limit(container, f"login-email:{body.email.lower()}", per_minute)
    account = await run_in_threadpool(container.accounts.authenticate, body.email, body.password)
    token = container.tokens.issue(account.id, account.role)
    return TokenPublic(access_token=token, expires_in=container.tokens.ttl_seconds)
