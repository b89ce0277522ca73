"""Organiser reports on a show, for its organiser and admins, from the read models: the
attendee list as CSV and the sales over time (projections/reports.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from http_shell.deps import CurrentUser
from http_shell.problems import ProblemError
from infra.tokens import Principal
from projections.attendee_csv import COLUMNS, attendee_row, csv_chunk
from projections.read_side import ReadSide
from projections.registry import ACCOUNTS, BOOKINGS, REPORTS
from projections.reports import (
    FIGURES,
    ReportShow,
    attendee_page,
    movement_span,
    report_show,
    sales_by_code,
    sales_series,
)
from read_api.deps import After, ReadSideDep, caught_up, query
from read_api.models import POSITION

router = APIRouter(prefix="/shows", tags=["reports"])

MAX_POINTS = 10_000  # buckets in one series: a week of minutes, a year of hours
PAGE_ROWS = 1000  # attendee rows read per query while the CSV streams out
STEPS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
COMMON: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid access token"},
    403: {"description": "neither the show's organiser nor an admin (`forbidden`)"},
    404: {"description": "no such show (`not-found`)"},
    503: {"description": "the read models have not reached `after` yet (`not-caught-up`)"},
}


class SalesFigures(BaseModel):
    tickets_sold: int = Field(description="tickets of bookings confirmed")
    revenue_cents: int = Field(description="what those bookings cost, in cents")
    tickets_refunded: int = Field(description="tickets of confirmed bookings given back")
    refunded_cents: int = Field(description="money of confirmed bookings refunded, in cents")


class SalesBucket(SalesFigures):
    bucket_start: datetime = Field(description="start of the bucket (UTC)")


class CodeSales(BaseModel):
    code: str = Field(description="a presale code")
    tickets: int = Field(description="tickets of confirmed bookings with it, net of refunds")
    revenue_cents: int = Field(description="what they brought in, net of refunds, in cents")


class SalesReport(BaseModel):
    show_id: UUID
    bucket: str
    start: datetime | None = Field(description="first bucket's start (None: nothing sold yet)")
    end: datetime | None = Field(description="last bucket's end, exclusive")
    currency: str
    series: list[SalesBucket] = Field(description="every bucket from start to end, in order")
    totals: SalesFigures = Field(description="the series summed")
    by_code: list[CodeSales] = Field(
        default_factory=list, description="the range's sales by presale code (net of refunds)"
    )
    position: int = POSITION


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


def may_report(user: Principal, show: ReportShow) -> bool:
    """The show's organiser (while an organiser) or any admin."""
    if user.is_admin:
        return True
    return user.is_organizer and show.organizer_id == user.account_id


async def managed_show(
    read: ReadSide, user: Principal, show_id: UUID, names: Sequence[str], after: int | None
) -> tuple[ReportShow, int]:
    """The show, once the read models `names` passed `after`, if the caller may see its
    reports: else 404 or 403."""
    position = await caught_up(read, [REPORTS, *names], after)

    def load() -> ReportShow | None:
        with read.models.connection() as conn:
            return report_show(conn, show_id)

    show = await query(load)
    if show is None:
        raise ProblemError(404, "not-found", "show not found")
    if not may_report(user, show):
        raise ProblemError(403, "forbidden", "only the show's organiser or an admin may see this")
    return show, position


# --- the attendee list ---


@router.get(
    "/{show_id}/attendees.csv",
    response_class=CsvResponse,
    responses={
        200: {
            "description": "one row per booking of the show, in the order they were placed",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **COMMON,
    },
)
async def attendees_csv(
    show_id: UUID, user: CurrentUser, read: ReadSideDep, after: After = None
) -> StreamingResponse:
    """The show's bookings as CSV (UTF-8, RFC 4180), one row each, in the order they were
    placed: `booking_id, customer_id, customer_name, customer_email, seats` (seat ids and
    general admission per section, e.g. `A-1-3 A-1-4 GA:2`), `tickets, status, amount, paid,
    refunded` (in the currency's units with its ISO 4217 decimals: two for EUR, none for JPY,
    three for KWD), `currency, reason, placed_at,
    updated_at` (UTC). Text that a spreadsheet would read as a formula (starting with
    `= + - @`, a tab or a line break) is prefixed with `'`. For the show's organiser and
    admins. Streamed page by page; `X-Position` is the log position it reflects at least."""
    _, position = await managed_show(read, user, show_id, [BOOKINGS, ACCOUNTS], after)

    def page(keyset: tuple[datetime, UUID] | None) -> list[dict[str, Any]]:
        with read.models.connection() as conn:
            return attendee_page(conn, show_id, keyset, PAGE_ROWS)

    first = await query(page, None)  # before the answer starts: its failure is still a 503

    async def body() -> AsyncIterator[bytes]:
        yield csv_chunk([COLUMNS])
        rows = first
        while rows:
            yield csv_chunk([attendee_row(r) for r in rows])
            if len(rows) < PAGE_ROWS:
                return
            last = rows[-1]
            rows = await query(page, (last["placed_at"], last["booking_id"]))

    return CsvResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="attendees-{show_id}.csv"',
            "X-Position": str(position),
            "Cache-Control": "no-store",
        },
    )


# --- the sales over time ---


@dataclass(frozen=True)
class Window:
    start: datetime  # a bucket boundary
    points: int

    def end(self, step: timedelta) -> datetime:
        return self.start + self.points * step


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
    if bucket in ("hour", "day"):
        moment = moment.replace(minute=0)
    if bucket == "day":
        moment = moment.replace(hour=0)
    return moment


def sales_window(
    bucket: str,
    start: datetime | None,
    end: datetime | None,
    span: tuple[datetime, datetime] | None,
) -> Window | None:
    """Whole buckets (UTC) from `start` (default: the first sale or refund) to `end`, exclusive
    (default: just after the last one); None when there is nothing to show. 422 for a range
    that is reversed, out of bounds, or longer than MAX_POINTS buckets."""
    if start is not None and end is not None and start >= end:
        raise ProblemError(422, "invalid-range", "`from` must be before `to`")
    step = STEPS[bucket]
    try:
        if start is None and span is not None:
            start = span[0]
        if end is None and span is not None:
            end = span[1] + timedelta(microseconds=1)
        if start is None or end is None or start >= end:
            return None
        first = _floor(start, bucket)
        points = -((first - end) // step)  # ceiling: the bucket holding `end` counts
        if points > MAX_POINTS:
            raise ProblemError(
                422,
                "range-too-large",
                f"{points} {bucket}s; at most {MAX_POINTS} per series: narrow `from` and "
                "`to` or use a longer bucket",
                max_points=MAX_POINTS,
                points=points,
            )
        window = Window(first, points)
        window.end(step)  # representable?
    except OverflowError:
        raise ProblemError(422, "invalid-range", "`from` or `to` is out of range") from None
    return window


def _aware(moment: datetime | None) -> datetime | None:
    """Times without a zone are taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get(
    "/{show_id}/sales",
    response_model=SalesReport,
    responses={
        **COMMON,
        422: {
            "description": "an unknown bucket, `from` not before `to` (`invalid-range`), or "
            f"more than {MAX_POINTS} buckets (`range-too-large`)"
        },
    },
)
async def sales(
    show_id: UUID,
    user: CurrentUser,
    read: ReadSideDep,
    bucket: Annotated[
        Literal["minute", "hour", "day"], Query(description="bucket width (UTC)")
    ] = "hour",
    start: Annotated[
        datetime | None,
        Query(alias="from", description="from this time (default: the first sale or refund)"),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="until this time, exclusive (default: after the last)"),
    ] = None,
    after: After = None,
) -> SalesReport:
    """Tickets sold and refunded and the money of each, per minute, hour or day (UTC), for
    the show's organiser and admins. A sale counts when its booking is confirmed (paid and
    confirmed in one step by the saga), a refund when the money of a confirmed booking goes
    back (a free booking: when it is cancelled). Every bucket of the range is listed, empty
    ones with zeros; the range is widened to whole buckets, at most 10000 of them."""
    show, position = await managed_show(read, user, show_id, [], after)
    begin, until = _aware(start), _aware(end)
    if begin is not None and until is not None and begin >= until:
        raise ProblemError(422, "invalid-range", "`from` must be before `to`")

    Loaded = tuple[Window | None, dict[datetime, dict[str, int]], list[dict[str, Any]]]

    def load() -> Loaded:
        with read.models.connection() as conn:
            span = None if begin and until else movement_span(conn, show_id)
            window = sales_window(bucket, begin, until, span)
            if window is None:
                return None, {}, []
            start, end = window.start, window.end(STEPS[bucket])
            return (
                window,
                sales_series(conn, show_id, bucket, start, end),
                sales_by_code(conn, show_id, start, end),
            )

    window, found, codes = await query(load)
    step = STEPS[bucket]
    series: list[SalesBucket] = []
    if window is not None:
        for n in range(window.points):
            at = window.start + n * step
            figures = found.get(at) or dict.fromkeys(FIGURES, 0)
            series.append(SalesBucket(bucket_start=at, **figures))
    totals = {k: sum(getattr(b, k) for b in series) for k in FIGURES}
    return SalesReport(
        show_id=show_id,
        bucket=bucket,
        start=window.start if window else None,
        end=window.end(step) if window else None,
        currency=show.currency,
        series=series,
        totals=SalesFigures(**totals),
        by_code=[CodeSales(**c) for c in codes],
        position=position,
    )
