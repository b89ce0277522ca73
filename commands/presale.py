"""Handlers for a show's presale codes: create (given or generated), revoke, list. Only the
show's organiser or an admin. Decided by the show's writer, like the holds the codes admit:
the codes' definitions are the show's PresaleCodes aggregate (a companion in the writer), their
uses its SeatInventory's, so a revocation and a hold with the same code are ordered, and a
code is never used beyond its `max_uses`.

Generated codes are drawn here (the domain draws no random numbers): 12 characters from an
alphabet without look-alikes (no 0/O, 1/I/L), 31 symbols: 59 bits, unguessable by trying.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from commands.errors import ForbiddenError
from commands.futures import then
from commands.models import CreatePresaleCodes, RevokePresaleCode
from commands.show_writer import ShowBatch
from commands.shows import Manager, ShowScoped
from domain.errors import ShowDeletedError, ShowStatusError
from domain.ids import presale_codes_id_for
from domain.presale import CodeNotFoundError, CodeTerms, PresaleCode, PresaleCodes
from domain.show import CANCELLED, DELETED, Show

T = TypeVar("T")

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # 31 symbols: no 0/O, 1/I/L
GENERATED_LENGTH = 12


def generate_code() -> str:
    """An unguessable code (secrets: the operating system's randomness)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(GENERATED_LENGTH))


@dataclass(frozen=True)
class CodeStatus:
    """A code, its terms and how it is used now (bookings held or bought with it)."""

    code: str
    max_uses: int
    uses: int
    tiers: list[str] | None
    discount_percent: int | None
    price_cents: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    revoked: bool
    created_at: datetime

    @classmethod
    def of(cls, code: PresaleCode, uses: int) -> CodeStatus:
        return cls(
            code=code.code,
            max_uses=code.max_uses,
            uses=uses,
            tiers=None if code.tiers is None else list(code.tiers),
            discount_percent=code.discount_percent,
            price_cents=code.price_cents,
            valid_from=code.valid_from,
            valid_until=code.valid_until,
            revoked=code.revoked,
            created_at=code.created_at,
        )


@dataclass(frozen=True)
class CodesCreated:
    codes: list[CodeStatus]
    position: int


@dataclass(frozen=True)
class CodePage:
    codes: list[CodeStatus]
    total: int
    position: int


class PresaleCommands(ShowScoped):
    def create_codes(self, command: CreatePresaleCodes, by: Manager) -> Future[CodesCreated]:
        """CodesCreated (and the show's PresaleCodes, on its first codes): all or nothing."""
        request = command.request
        show_id = command.show_id
        if request.codes is not None:
            wanted = list(request.codes)
        else:
            assert request.count is not None  # guaranteed by PresaleCodesRequest
            wanted = _distinct_generated(request.count)
        terms = CodeTerms(
            max_uses=request.max_uses,
            tiers=None if request.tiers is None else list(request.tiers),
            discount_percent=request.discount_percent,
            price_cents=request.price_cents,
            valid_from=request.valid_from,
            valid_until=request.valid_until,
        )
        codes_id = presale_codes_id_for(show_id)

        def new() -> PresaleCodes:
            return PresaleCodes(presale_codes_id=codes_id, show_id=show_id)

        def decide(batch: ShowBatch) -> list[CodeStatus]:
            _check_open_for_codes(batch)
            now = self._clock()
            tiers = set(batch.inventory.price_tiers)
            codes = batch.find_companion(codes_id, PresaleCodes)
            if codes is None:
                new().create_codes(wanted, terms, tiers, now)  # refused: nothing created
                codes = batch.companion(codes_id, PresaleCodes, new)
            codes.create_codes(wanted, terms, tiers, now)
            return [CodeStatus.of(codes.codes[c], 0) for c in wanted]

        future = self._submit(show_id, by, decide)
        return then(future, lambda done: CodesCreated(done[0], done[1]))

    def revoke_code(self, command: RevokePresaleCode, by: Manager) -> Future[int]:
        """CodeRevoked (nothing if revoked already); CodeNotFoundError for an unknown code."""

        def decide(batch: ShowBatch) -> None:
            codes = batch.find_companion(presale_codes_id_for(command.show_id), PresaleCodes)
            if codes is None:
                raise CodeNotFoundError(command.code)
            codes.revoke(command.code)

        return then(self._submit(command.show_id, by, decide), lambda done: done[1])

    def list_codes(self, show_id: UUID, by: Manager, offset: int, limit: int) -> Future[CodePage]:
        """The show's codes in the order created (then by code), `limit` from `offset`, with
        their uses now: read in the show's writer (no events), so never stale."""

        def decide(batch: ShowBatch) -> tuple[list[CodeStatus], int]:
            codes = batch.find_companion(presale_codes_id_for(show_id), PresaleCodes)
            if codes is None:
                return [], 0
            ordered = sorted(codes.codes.values(), key=lambda c: (c.created_at, c.code))
            uses = batch.inventory.code_uses
            page = ordered[offset : offset + limit]
            return [CodeStatus.of(c, uses.get(c.code, 0)) for c in page], len(ordered)

        future = self._submit(show_id, by, decide)
        return then(future, lambda done: CodePage(done[0][0], done[0][1], done[1]))

    def _submit(
        self, show_id: UUID, by: Manager, decide: Callable[[ShowBatch], T]
    ) -> Future[tuple[T, int]]:
        self._authorize(show_id, by)
        return self._writers.for_show(show_id).submit(decide)

    def _authorize(self, show_id: UUID, by: Manager) -> None:
        """Only the show's organiser or an admin (ForbiddenError); 404 for an unknown or
        deleted show. Blocking (it loads the show): call it off the event loop."""
        show = self._store.get(show_id, Show)
        if show.status == DELETED:
            raise ShowDeletedError(show_id)
        if not show.is_managed_by(by.account_id, by.is_admin):
            raise ForbiddenError("only the show's organiser or an admin may manage its codes")


def _check_open_for_codes(batch: ShowBatch) -> None:
    """No new codes for a show deleted or cancelled."""
    show = batch.show()
    if show.status == DELETED:
        raise ShowDeletedError(show.id)
    if show.status == CANCELLED:
        raise ShowStatusError(f"show {show.id} is cancelled: it takes no new codes")


def _distinct_generated(count: int) -> list[str]:
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        code = generate_code()
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes
