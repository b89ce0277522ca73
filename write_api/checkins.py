"""Check-in at the door: scanning a ticket (`POST /shows/{id}/checkins`) and uploading the scans
of an offline gate (`POST /shows/{id}/checkins/batch`). Door staff (role `door`, any show), the
show's organiser and admins; a customer or another organiser gets 403 `forbidden`.
commands/checkins.py decides; the show's writer admits each ticket once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from commands.checkins import (
    MAX_OFFLINE_SCANS,
    SCANNER_ROLES,
    CheckinCommands,
    OfflineResult,
    OfflineScan,
    Scan,
    ScanAnswer,
    Scanner,
    ScanTicket,
    UploadScans,
)
from commands.models import Command
from domain.door import ADMITTED, ALREADY_ADMITTED
from http_shell.deps import ContainerDep, CurrentUser
from http_shell.problems import ProblemError, problem
from infra.tokens import Principal
from write_api.waiting import outcome_of

router = APIRouter(prefix="/shows", tags=["check-in"])

CHECKINS_PATH = "/shows/{show_id}/checkins"
BATCH_PATH_PATTERN = r"/shows/[^/]+/checkins/batch"
# 5,000 scans of up to ~700 bytes each (a secret is ~150 characters, at most 512).
CHECKIN_BATCH_BYTES = 4 * 1024 * 1024

Responses = dict[int | str, dict[str, Any]]
WHO: Responses = {
    403: {
        "description": "`forbidden`: not door staff, the show's organiser or an admin "
        "(door accounts scan any show)"
    },
    404: {"description": "`not-found`: no such show, or a ticket this show never issued"},
}


async def require_scanner(user: CurrentUser) -> Principal:
    if user.role not in SCANNER_ROLES:
        raise ProblemError(
            403, "forbidden", "only door staff, the show's organiser or an admin may scan"
        )
    return user


ScannerUser = Annotated[Principal, Depends(require_scanner)]


def _commands(container: ContainerDep) -> CheckinCommands:
    if container.checkins is None:
        raise ProblemError(503, "unavailable", "check-in is not configured")
    return container.checkins


def _scanner(user: Principal) -> Scanner:
    return Scanner(user.account_id, user.role)


class AdmittedReply(BaseModel):
    result: Literal["admitted"] = "admitted"
    ticket_id: UUID
    seat: str | None = Field(description="the seat; null for a general-admission place")
    section: str
    holder_name: str
    at: datetime = Field(description="when it was admitted")
    gate: str = Field(description="where it was admitted")
    replayed: bool = Field(description="true: this scan id was answered before (a retry)")
    position: int


@router.post(
    "/{show_id}/checkins",
    response_model=AdmittedReply,
    responses={
        **WHO,
        409: {
            "description": "a problem with a `result`: `already-admitted` (type "
            "`already-admitted`, with `ticket_id`, `at` and `gate` of the first admission) or "
            "`void` (type `ticket-void`: cancelled, refunded or transferred)"
        },
        422: {
            "description": "`invalid-secret`: forged, altered, truncated or unknown key; "
            "`wrong-show`: the ticket of another show (`ticket_show_id`); `validation-error`: "
            "gate or scan id empty, longer than 64 characters or not one line of safe text"
        },
    },
)
async def scan_ticket(
    show_id: UUID, body: Scan, user: ScannerUser, container: ContainerDep, response: Response
) -> AdmittedReply | JSONResponse:
    """Scan a ticket at a gate: 200 `{result: "admitted", ticket_id, seat, holder_name, …}`
    the first time; then 409 `already-admitted` with when and where it was admitted; 409
    `void` for a cancelled, refunded or transferred ticket. The same `scan_id` for the same
    ticket replays the first answer (a scanner's retry is safe; `Idempotent-Replayed: true`).
    Two gates scanning one ticket at the same instant: exactly one is admitted (the show's
    writer decides)."""
    commands = _commands(container)
    command = ScanTicket(show_id=show_id, scan=body)
    future = await run_in_threadpool(commands.scan, command, _scanner(user))
    answer = await outcome_of(future, container.settings.command_timeout_seconds)
    if answer.result != ADMITTED:
        return _refusal(answer)
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    assert answer.at is not None and answer.gate is not None
    return AdmittedReply(
        ticket_id=answer.ticket_id,
        seat=answer.seat,
        section=answer.section,
        holder_name=answer.holder_name,
        at=answer.at,
        gate=answer.gate,
        replayed=answer.replayed,
        position=answer.position,
    )


def _refusal(answer: ScanAnswer) -> JSONResponse:
    """The door's "no" as problem+json that keeps the scanner's `result` field."""
    if answer.result == ALREADY_ADMITTED:
        at = answer.at.isoformat() if answer.at is not None else None
        return problem(
            409,
            "already-admitted",
            f"this ticket was admitted at gate {answer.gate} at {at}",
            result=ALREADY_ADMITTED,
            ticket_id=str(answer.ticket_id),
            at=at,
            gate=answer.gate,
            seat=answer.seat,
            holder_name=answer.holder_name,
        )
    return problem(
        409,
        "ticket-void",
        "this ticket is void (cancelled, refunded or transferred)",
        result="void",
        ticket_id=str(answer.ticket_id),
    )


class BatchRequest(Command):
    scans: list[OfflineScan] = Field(
        min_length=1,
        max_length=MAX_OFFLINE_SCANS,
        description=f"1 to {MAX_OFFLINE_SCANS:,} scans made offline",
    )


class ScanResult(BaseModel):
    scan_id: str
    gate: str
    scanned_at: datetime = Field(description="as recorded (clamped when it was ahead)")
    result: Literal[
        "admitted",
        "already-admitted",
        "void",
        "invalid-secret",
        "wrong-show",
        "unknown-ticket",
        "invalid-time",
    ]
    ticket_id: UUID | None = None
    seat: str | None = None
    section: str | None = None
    holder_name: str | None = None
    admitted_at: datetime | None = Field(
        default=None, description="the ticket's admission: this scan's, or the first one"
    )
    admitted_gate: str | None = None
    replayed: bool = False
    clamped: bool = Field(default=False, description="scanned_at was moved into range")
    detail: str | None = Field(default=None, description="why the scan was refused")


class Duplicate(BaseModel):
    """A ticket scanned again after its admission: both gates and times."""

    ticket_id: UUID
    scan_id: str
    gate: str
    scanned_at: datetime
    admitted_gate: str | None
    admitted_at: datetime | None


class BatchReply(BaseModel):
    show_id: UUID
    scans: list[ScanResult] = Field(description="one per uploaded scan, in upload order")
    counts: dict[str, int] = Field(description="scans by result")
    duplicates: list[Duplicate]
    position: int


@router.post(
    "/{show_id}/checkins/batch",
    response_model=BatchReply,
    responses={
        **WHO,
        413: {"description": "`payload-too-large`: bodies are limited to 4 MiB here"},
        422: {
            "description": "`validation-error`: no scans, more than 5,000, or a scan without "
            "a secret, gate, scan id or zoned `scanned_at` (nothing is recorded)"
        },
    },
)
async def upload_scans(
    show_id: UUID, body: BatchRequest, user: ScannerUser, container: ContainerDep
) -> BatchReply:
    """Upload the scans an offline gate made with the offline kit
    (`GET /shows/{id}/checkins/offline-kit`). The first scan of a ticket wins across gates (by
    `scanned_at`, then upload order); a later one is a duplicate (`already-admitted`, and in
    `duplicates` with both gates and times). Each scan is answered: `admitted`,
    `already-admitted`, `void`, `invalid-secret`, `wrong-show`, `unknown-ticket` or
    `invalid-time` (more than 2 minutes in the future, or before the show's first ticket was
    issued; within 2 minutes it is clamped, `clamped: true`). Uploading again is safe: each
    scan id replays its answer. Scans already admitted online stay admitted as they were."""
    commands = _commands(container)
    command = UploadScans(show_id=show_id, scans=body.scans)
    future = await run_in_threadpool(commands.upload_scans, command, _scanner(user))
    timeout = container.settings.command_timeout_seconds * 4
    answer = await outcome_of(future, timeout)
    results = [_result(r) for r in answer.results]
    return BatchReply(
        show_id=show_id,
        scans=results,
        counts=answer.counts,
        duplicates=[
            Duplicate(
                ticket_id=r.ticket_id,
                scan_id=r.scan_id,
                gate=r.gate,
                scanned_at=r.scanned_at,
                admitted_gate=r.admitted_gate,
                admitted_at=r.admitted_at,
            )
            for r in answer.duplicates
            if r.ticket_id is not None
        ],
        position=answer.position,
    )


def _result(r: OfflineResult) -> ScanResult:
    return ScanResult.model_validate(
        {
            "scan_id": r.scan_id,
            "gate": r.gate,
            "scanned_at": r.scanned_at,
            "result": r.result,
            "ticket_id": r.ticket_id,
            "seat": r.seat,
            "section": r.section,
            "holder_name": r.holder_name,
            "admitted_at": r.admitted_at,
            "admitted_gate": r.admitted_gate,
            "replayed": r.replayed,
            "clamped": r.clamped,
            "detail": r.detail,
        }
    )
