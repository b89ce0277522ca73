"""HTTP request dependencies shared by the command and query APIs: container, caller, limits."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from http_shell.container import Container
from http_shell.problems import ProblemError
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
    """The caller as their account is now: the token must be valid and its account exist, be
    active and still be in the token's session generation (a new password or a deactivation
    revokes every earlier token); the role is the account's current one, never the token's.
    One indexed read of the account's new events per request (the process keeps the account
    as it saw it last), so a change made through any process counts at once (off the event
    loop: it blocks)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidTokenError("no bearer token")
    claimed = container.tokens.verify(credentials.credentials)
    account = await run_in_threadpool(container.accounts.standing, claimed.account_id)
    if account is None or not account.accepts_session(claimed.generation):
        raise InvalidTokenError("the token was revoked or its account is not active")
    return Principal(claimed.account_id, account.role, claimed.generation)


CurrentUser = Annotated[Principal, Depends(current_principal)]


async def require_admin(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise ProblemError(403, "forbidden", "this operation needs the admin role")
    return user


async def require_organizer(user: CurrentUser) -> Principal:
    """Organisers and admins; which shows an organiser may manage is the command's check."""
    if not user.is_organizer:
        raise ProblemError(403, "forbidden", "this operation needs the organizer or admin role")
    return user


async def require_customer(user: CurrentUser) -> Principal:
    if user.role != "customer":
        raise ProblemError(403, "forbidden", "only customers can book")
    return user


AdminUser = Annotated[Principal, Depends(require_admin)]
OrganizerUser = Annotated[Principal, Depends(require_organizer)]
CustomerUser = Annotated[Principal, Depends(require_customer)]


IPNetwork = IPv4Network | IPv6Network


def client_address(request: Request) -> str:
    """The address per-address limits count: the socket peer, unless the peer is one of
    `TICKETBLITZ_TRUSTED_PROXIES` (uvicorn's own proxy handling is off: it trusts loopback)."""
    container: Container = request.app.state.container
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return resolve_client_address(peer, forwarded, container.settings.trusted_proxies)


def resolve_client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """Walk X-Forwarded-For from the right while the hop is a trusted proxy: the first hop
    that is not one is the client (everything to its left was written by the client and
    proves nothing). A hop that is not an address ends the walk at the last trusted one."""
    address = _parse_address(peer) if peer is not None else None
    if address is None:
        return peer or "unknown"
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while _is_trusted(address, trusted) and hops:
        hop = _parse_address(hops.pop())
        if hop is None:
            break
        address = hop
    return str(address)


def limit_key(address: str) -> str:
    """The rate-limit bucket of an address: IPv6 clients usually own a whole /64, so
    counting each address would let them rotate through it."""
    parsed = _parse_address(address)
    if isinstance(parsed, IPv6Address):
        return str(IPv6Network((parsed, 64), strict=False))
    return address


def _parse_address(text: str) -> IPv4Address | IPv6Address | None:
    """An address as proxies write it: bare, `v4:port` or `[v6]:port`; IPv4-mapped IPv6 as
    IPv4, so one client has one spelling."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPv4Address | IPv6Address, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


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
