"""HTTP request dependencies shared by the command and query APIs: container, caller, limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from infra.bootstrap import Container
from infra.problems import ProblemError
from infra.tokens import InvalidTokenError, Principal

_bearer = HTTPBearer(auto_error=False)


# These dependencies are `async def` on purpose: they do microseconds of work, and a sync
# dependency costs a thread-pool hop per request (measured: a third of the request's CPU).


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def current_principal(
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidTokenError("no bearer token")
    return container.tokens.verify(credentials.credentials)


CurrentUser = Annotated[Principal, Depends(current_principal)]


async def require_admin(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise ProblemError(403, "forbidden", "this operation needs the admin role")
    return user


async def require_customer(user: CurrentUser) -> Principal:
    if user.role != "customer":
        raise ProblemError(403, "forbidden", "only customers can book")
    return user


AdminUser = Annotated[Principal, Depends(require_admin)]
CustomerUser = Annotated[Principal, Depends(require_customer)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def enforce_rate_limit(container: Container, bucket: str, per_minute: int) -> None:
    wait = container.rate_limiter.check(bucket, per_minute)
    if wait is not None:
        seconds = max(1, int(wait + 0.999))
        raise ProblemError(
            429,
            "rate-limited",
            "too many requests; slow down",
            {"Retry-After": str(seconds)},
        )
