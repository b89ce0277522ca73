"""The door's reads: check-in figures (`GET /shows/{id}/checkins/stats`) and the offline kit a
gate scans with when the network is gone (`GET /shows/{id}/checkins/offline-kit`). Door staff
(any show), the show's organiser and admins; from the tickets read model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from domain.account import ADMIN, DOOR
from http_shell.deps import CurrentUser
from http_shell.problems import ProblemError
from infra.tokens import Principal
from projections.checkins import checkin_stats, kit_lists
from projections.registry import REPORTS, TICKETS
from projections.reports import ReportShow, report_show
from read_api.deps import After, ReadSideDep, caught_up, query
from read_api.models import POSITION
from read_api.tickets import signer_of

router = APIRouter(prefix="/shows", tags=["check-in"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid access token (`unauthorized`)"},
    403: {
        "description": "`forbidden`: not door staff, the show's organiser or an admin (door "
        "accounts see every show)"
    },
    404: {"description": "no such show (`not-found`)"},
    503: {"description": "the read models have not reached `after` yet (`not-caught-up`)"},
}


class MinuteFigures(BaseModel):
    minute: datetime = Field(description="the minute's start (UTC), by the gates' scan times")
    admitted: int
    by_gate: dict[str, int]


class CheckinStatsReply(BaseModel):
    show_id: UUID
    admitted: int = Field(description="tickets admitted (also those voided after)")
    by_gate: dict[str, int] = Field(description="admissions per gate")
    by_minute: list[MinuteFigures] = Field(description="minutes with admissions, in order")
    valid_outside: int = Field(description="valid tickets not admitted yet")
    void: int = Field(description="void tickets (cancelled, refunded, transferred away)")
    position: int = POSITION


class OfflineKit(BaseModel):
    show_id: UUID
    generated_at: datetime
    position: int = Field(description="the log position the lists reflect")
    current_kid: str = Field(description="the key new secrets are signed with")
    public_keys: dict[str, str] = Field(
        description="kid -> base64 of the raw Ed25519 public key; a secret "
        "`TB1.<kid>.<payload>.<signature>` verifies when `signature` (base64url) is the "
        "key's signature of `TB1.<kid>.<payload>`; the payload (base64url) is the ticket id "
        "and the show id (16 bytes each) and the place (UTF-8)"
    )
    void_ticket_ids: list[UUID] = Field(description="refuse these: cancelled, refunded, moved")
    admitted_ticket_ids: list[UUID] = Field(
        description="admitted before the kit was made: a scan of one is a duplicate"
    )
    valid_tickets: int = Field(description="valid tickets not admitted yet")


async def _door_show(read: ReadSideDep, user: Principal, show_id: UUID, after: int | None) -> int:
    """The read models' position once they passed `after`, if the caller may see the show's
    door: else 404 (no such show) or 403."""
    if user.role not in (DOOR, ADMIN) and not user.is_organizer:
        raise ProblemError(403, "forbidden", "only door staff, the show's organiser or an admin")
    position = await caught_up(read, [REPORTS, TICKETS], after)

    def load() -> ReportShow | None:
        with read.models.connection() as conn:
            return report_show(conn, show_id)

    show = await query(load)
    if show is None:
        raise ProblemError(404, "not-found", "show not found")
    if user.role not in (DOOR, ADMIN) and show.organizer_id != user.account_id:
        raise ProblemError(403, "forbidden", "only door staff, the show's organiser or an admin")
    return position


@router.get("/{show_id}/checkins/stats", response_model=CheckinStatsReply, responses=RESPONSES)
async def stats(
    show_id: UUID, user: CurrentUser, read: ReadSideDep, after: After = None
) -> CheckinStatsReply:
    """Who came in: admissions by gate and by minute (the gates' scan times, UTC), and the
    valid tickets still outside. With `after` (a `position` of the command API, e.g. a scan's)
    the figures include that write."""
    position = await _door_show(read, user, show_id, after)

    def load() -> CheckinStatsReply:
        with read.models.connection() as conn:
            figures = checkin_stats(conn, show_id)
        return CheckinStatsReply(
            show_id=show_id,
            admitted=figures.admitted,
            by_gate=figures.by_gate,
            by_minute=[
                MinuteFigures(minute=m.minute, admitted=m.admitted, by_gate=m.by_gate)
                for m in figures.by_minute
            ],
            valid_outside=figures.valid_outside,
            void=figures.void,
            position=position,
        )

    return await query(load)


@router.get("/{show_id}/checkins/offline-kit", response_model=OfflineKit, responses=RESPONSES)
async def offline_kit(
    show_id: UUID, user: CurrentUser, read: ReadSideDep, request: Request, after: After = None
) -> OfflineKit:
    """What a gate needs to admit without the network: the deployment's public keys (to
    verify secrets), the show's void tickets (refuse them) and those admitted already. Scan
    with it, then upload the scans (`POST /shows/{id}/checkins/batch`): the server decides
    each ticket's first scan. Fetch a fresh kit before the doors open (tickets voided later
    are not in it: the upload refuses them)."""
    signer = signer_of(request)
    position = await _door_show(read, user, show_id, after)

    def load() -> OfflineKit:
        with read.models.connection() as conn:
            lists = kit_lists(conn, show_id)
        return OfflineKit(
            show_id=show_id,
            generated_at=datetime.now(UTC),
            position=position,
            current_kid=signer.current_kid(),
            public_keys=signer.public_keys(),
            void_ticket_ids=lists.void,
            admitted_ticket_ids=lists.admitted,
            valid_tickets=lists.valid,
        )

    return await query(load)
