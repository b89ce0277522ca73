"""Access tokens: HS256 JWTs with expiry, verified strictly (no `alg: none`, no other algorithm).

A token names its account (`sub`) and the account's session generation when it was issued
(`gen`; tokens issued before generations existed have none: generation 0). Its `role` claim
is informative only: the role that counts is the account's current one, read at each request
(http_shell/deps.py), as is whether the account is active and the generation still current
(a password change or a deactivation moves the generation: older tokens are refused).

A token also says who issued it (`iss`) and for whom (`aud`), both required and checked, so a
token another service signed with a shared secret, or one minted for another audience, is
refused (TICKETBLITZ_JWT_ISSUER, TICKETBLITZ_JWT_AUDIENCE)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import jwt

ALGORITHM = "HS256"
ISSUER = "ticketblitz"  # the defaults of TICKETBLITZ_JWT_ISSUER and TICKETBLITZ_JWT_AUDIENCE
AUDIENCE = "ticketblitz-api"


class InvalidTokenError(Exception):
    """Missing, malformed, badly signed, expired or tampered token."""


@dataclass(frozen=True)
class Principal:
    account_id: UUID
    role: str
    generation: int = 0  # the account's session generation the token was issued in

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_organizer(self) -> bool:
        """Organisers create shows and manage their own; admins manage every show."""
        return self.role in ("organizer", "admin")


class TokenService:
    def __init__(
        self, secret: str, ttl_seconds: int, issuer: str = ISSUER, audience: str = AUDIENCE
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT secret must be at least 32 characters")
        if not issuer or not audience:
            raise ValueError("the JWT issuer and audience must not be empty")
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self.issuer = issuer
        self.audience = audience

    def issue(
        self, account_id: UUID, role: str, generation: int = 0, now: datetime | None = None
    ) -> str:
        issued = now or datetime.now(UTC)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(account_id),
            "role": role,
            "gen": generation,
            "iat": issued,
            "exp": issued + timedelta(seconds=self.ttl_seconds),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The token's own claims, signature and expiry checked; whether the account still
        accepts it is the caller's check (`current_principal`)."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "sub", "role", "iss", "aud"]},
            )
            generation = claims.get("gen", 0)
            if type(generation) is not int or generation < 0:
                raise ValueError("gen must be a natural number")
            return Principal(UUID(claims["sub"]), str(claims["role"]), generation)
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as error:
            raise InvalidTokenError(str(error)) from error


def demo_secret(data_dir: Path) -> str:
    """Demo mode only: a random secret kept in the data dir so tokens survive a restart."""
    return kept_secret(data_dir / "jwt-secret")


def kept_secret(path: Path, prefix: str = "") -> str:
    """A random secret generated once and kept (owner-readable only) in `path`."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(prefix + secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        tmp.rename(path)
    return path.read_text().strip()
