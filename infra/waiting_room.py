"""The waiting room's storage (Redis) and its admissions (signed, short-lived).

Per show, five keys with the show's id as the hash tag (one cluster slot):
- `queue:{S}:accounts` hash account -> token (one token per account and show),
- `queue:{S}:tokens`   hash token -> account,
- `queue:{S}:early`    sorted set of tokens that joined before the opening, scored by their draw,
- `queue:{S}:late`     sorted set of later tokens, scored by their slot,
- `queue:{S}:last`     the last slot given to a later token.
A join is one Lua script (atomic across API processes): a second join of an account answers its
first token. An early token's slot is its rank by draw (final at the opening: no early join
comes after a later one, the script sees to it); a later token's is given when it joins
(domain/waiting_room.py has the rules). The keys expire a day after the sale closes.

An admission is an HS256 JWT under a key derived from the JWT secret for this purpose only (an
access token is no admission, nor the other way round), naming the account (`sub`) and the show
(`show`) and the sale's opening it was issued under (`opens`: a postponed opening draws the
order again, so an admission of the first one is void), valid `ttl` from when it is issued; its
expiry is checked against the app's clock.
Its `jti` makes each one distinct; it is not single-use: an account's holds are bounded by the
show's cap per customer, and another account gains nothing from it."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt
import redis

from commands.ports import Clock
from domain.waiting_room import WaitingRoomShow, admitted_count, draw

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
MAX_CACHED_SHOWS = 10_000
ADMISSION_AUDIENCE = "ticketblitz-admission"
ADMISSION_ISSUER = "ticketblitz-waiting-room"
TOKEN_BYTES = 16  # 22 URL-safe characters
TOKEN_PATTERN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
KEEP_AFTER_CLOSE = timedelta(days=1)

# KEYS: accounts, tokens, early, late, last. ARGV: account, new token, early (1/0), draw,
# slots let in now, expire at (unix seconds). Answers {token, 1 if new, kind, number}: kind
# "early" with the rank by draw (0 for a new one: not final before the opening), or "late"
# with the slot.
_JOIN = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  local rank = redis.call('ZRANK', KEYS[3], existing)
  if rank then return {existing, 0, 'early', rank + 1} end
  return {existing, 0, 'late', redis.call('ZSCORE', KEYS[4], existing)}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
local last = redis.call('GET', KEYS[5])
local kind, number = 'early', 0
if ARGV[3] == '1' and not last then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
else
  local previous = tonumber(last or redis.call('ZCARD', KEYS[3]))
  local slot = string.format('%d', math.max(previous + 1, tonumber(ARGV[5])))
  redis.call('SET', KEYS[5], slot)
  redis.call('ZADD', KEYS[4], slot, ARGV[2])
  kind, number = 'late', slot
end
for i = 1, 5 do redis.call('EXPIREAT', KEYS[i], ARGV[6]) end
return {ARGV[2], 1, kind, number}
"""

# KEYS: tokens, early, late. ARGV: token. Answers {account, "early", rank} or
# {account, "late", slot}, or nil for an unknown token.
_LOOKUP = """
local account = redis.call('HGET', KEYS[1], ARGV[1])
if not account then return nil end
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
if rank then return {account, 'early', rank + 1} end
local slot = redis.call('ZSCORE', KEYS[3], ARGV[1])
return {account, 'late', slot}
"""


class WaitingRoomUnavailableError(Exception):
    """Redis did not answer: the waiting room cannot be joined or read now."""


class AdmissionError(Exception):
    """The admission is missing, forged, expired, or for another account or show."""


@dataclass(frozen=True)
class Joined:
    token: str
    created: bool
    slot: int | None  # None before the opening (the draw is final then)


@dataclass(frozen=True)
class Ticket:
    """A queue token as stored: its account and slot (None: early, before the opening)."""

    account_id: UUID
    slot: int | None


def derived_key(secret: str, purpose: str) -> bytes:
    """A key for one purpose only, from the app's secret."""
    return hmac.new(secret.encode(), f"ticketblitz {purpose}".encode(), hashlib.sha256).digest()


def is_token_shaped(token: str) -> bool:
    """Only what `join` hands out reaches Redis (anything else is simply not found)."""
    return 16 <= len(token) <= 64 and all(c in TOKEN_PATTERN_CHARS for c in token)


def _keys(show_id: UUID) -> list[str]:
    base = f"queue:{{{show_id}}}"
    return [f"{base}:accounts", f"{base}:tokens", f"{base}:early", f"{base}:late", f"{base}:last"]


class WaitingRoom:
    def __init__(self, client: redis.Redis, secret: str, clock: Clock) -> None:
        self._client = client
        self._draw_key = derived_key(secret, "waiting-room draw v1")
        self._clock = clock
        self._join = client.register_script(_JOIN)
        self._lookup = client.register_script(_LOOKUP)

    def now(self) -> datetime:
        return self._clock()

    def join(self, show: WaitingRoomShow, account_id: UUID) -> Joined:
        """The account's token for the show (its first one if it joined before)."""
        assert show.rate is not None and show.opens_at is not None
        now = self._clock()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        early = now < show.opens_at
        expire_at = max(show.closes_at, now) + KEEP_AFTER_CLOSE
        expire = max(int(expire_at.timestamp()), int(time.time()) + 86_400)
        args: list[Any] = [
            str(account_id),
            token,
            "1" if early else "0",
            draw(self._draw_key, show.show_id, token),
            admitted_count(show.rate, show.opens_at, now),
            expire,
        ]
        try:
            answer = self._join(keys=_keys(show.show_id), args=args)
        except redis.RedisError as error:
            raise WaitingRoomUnavailableError(str(error)) from error
        slot = None if _text(answer[2]) == "early" and early else int(float(_text(answer[3])))
        return Joined(_text(answer[0]), int(answer[1]) == 1, slot)

    def ticket(self, show: WaitingRoomShow, token: str) -> Ticket | None:
        """The token's account and slot (None before the opening), or None if unknown."""
        if not is_token_shaped(token):
            return None
        keys = _keys(show.show_id)
        try:
            answer = self._lookup(keys=[keys[1], keys[2], keys[3]], args=[token])
        except redis.RedisError as error:
            raise WaitingRoomUnavailableError(str(error)) from error
        if answer is None:
            return None
        account, kind, number = _text(answer[0]), _text(answer[1]), answer[2]
        if kind == "early" and show.opens_at is not None and self._clock() < show.opens_at:
            return Ticket(UUID(account), None)  # the draw is only final at the opening
        return Ticket(UUID(account), int(float(_text(number))))

    def token_of(self, show_id: UUID, account_id: UUID) -> str | None:
        try:
            found = self._client.hget(_keys(show_id)[0], str(account_id))
        except redis.RedisError as error:
            raise WaitingRoomUnavailableError(str(error)) from error
        return None if found is None else _text(found)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


ShowLookup = Callable[[UUID], WaitingRoomShow | None]


class CachedShows:
    """Shows' waiting-room settings (from the catalog read model), kept `ttl_seconds` per show
    in this process: a booking costs a dict lookup, and a changed setting counts within the
    catalog's lag plus `ttl_seconds`. When the lookup fails, the last answer known stands."""

    def __init__(self, lookup: ShowLookup, ttl_seconds: float = 1.0) -> None:
        self._lookup = lookup
        self._ttl = ttl_seconds
        self._known: dict[UUID, tuple[float, WaitingRoomShow | None]] = {}
        self._lock = threading.Lock()

    def cached(self, show_id: UUID) -> tuple[bool, WaitingRoomShow | None]:
        """(fresh, the show) without I/O; not fresh: call `load` (blocking)."""
        found = self._known.get(show_id)
        if found is None or time.monotonic() - found[0] > self._ttl:
            return False, None
        return True, found[1]

    def load(self, show_id: UUID) -> WaitingRoomShow | None:
        try:
            show = self._lookup(show_id)
        except Exception:
            stale = self._known.get(show_id)
            if stale is None:
                raise
            log.warning("catalog unavailable: waiting room of show %s as last known", show_id)
            return stale[1]
        with self._lock:
            if len(self._known) >= MAX_CACHED_SHOWS:
                self._known.clear()  # crude but bounded: the next lookups refill it
            self._known[show_id] = (time.monotonic(), show)
        return show


class Admissions:
    """Signs and checks admissions (see the module's text)."""

    def __init__(
        self, secret: str, ttl: timedelta, clock: Clock, shows: CachedShows | None = None
    ) -> None:
        self._key = derived_key(secret, "waiting-room admission v1")
        self.ttl = ttl
        self._clock = clock
        self.shows = shows

    def now(self) -> datetime:
        return self._clock()

    def issue(self, account_id: UUID, show_id: UUID, opens_at: datetime) -> tuple[str, datetime]:
        now = self._clock()
        expires_at = (now + self.ttl).replace(microsecond=0)
        claims = {
            "iss": ADMISSION_ISSUER,
            "aud": ADMISSION_AUDIENCE,
            "sub": str(account_id),
            "show": str(show_id),
            "opens": int(opens_at.timestamp()),
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": secrets.token_urlsafe(8),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), expires_at

    def check(
        self, admission: str | None, account_id: UUID, show_id: UUID, opens_at: datetime
    ) -> None:
        """Refuse (AdmissionError, saying why) anything but an unexpired admission of this
        account for this show's current opening, signed with our key."""
        if admission is None:
            raise AdmissionError(
                "this show's waiting room is on: join it (POST /shows/{id}/queue) and send the "
                "`admission` it gives you once it is your turn"
            )
        try:
            claims = jwt.decode(
                admission,
                self._key,
                algorithms=[ALGORITHM],
                audience=ADMISSION_AUDIENCE,
                issuer=ADMISSION_ISSUER,
                # Times are the app's clock's, checked below (not the wall clock's).
                options={
                    "require": ["exp", "sub", "show", "opens", "aud", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise AdmissionError(
                "the admission is not valid (not one the waiting room signed)"
            ) from None
        if claims.get("show") != str(show_id):
            raise AdmissionError("the admission is for another show")
        if claims.get("sub") != str(account_id):
            raise AdmissionError("the admission is another account's: it admits only its own")
        if claims.get("opens") != int(opens_at.timestamp()):
            raise AdmissionError(
                "the admission is for an earlier opening of this sale: ask the waiting room again"
            )
        expires = claims.get("exp")
        if type(expires) is not int:
            raise AdmissionError("the admission is not valid (no expiry)")
        if self._clock() >= datetime.fromtimestamp(expires, UTC):
            raise AdmissionError(
                "the admission expired: ask the waiting room again (GET /shows/{id}/queue/{token})"
            )
