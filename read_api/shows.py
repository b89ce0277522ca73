"""Queries on shows: the catalog, a show with its availability, its seat map, its sales."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from http_shell.conditional import conditional, entity_tag
from http_shell.deps import AdminUser
from http_shell.problems import ProblemError
from projections.queries import ShowFilter
from projections.read_side import ReadSide
from projections.registry import CATALOG, SALES
from read_api.deps import (
    NO_NUL,
    After,
    Cursor,
    Limit,
    ReadSideDep,
    caught_up,
    decode_cursor,
    encode_cursor,
    query,
)
from read_api.hot_reads import HotReads, HotResource, hot_reads_of
from read_api.models import (
    SeatMap,
    SectionAvailability,
    ShowDetails,
    ShowPage,
    ShowStats,
    ShowSummary,
)

router = APIRouter(prefix="/shows", tags=["queries"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such show"}}
BEHIND: dict[int | str, dict[str, Any]] = {
    503: {"description": "the read models have not reached `after` yet (see Retry-After)"}
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "not modified: the `If-None-Match` tag is the current one (no body)"}
}
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description="the `ETag` of an earlier answer: 304 (no body) if it is still current",
    ),
]


def _aware(moment: datetime | None) -> datetime | None:
    """Query times without a zone are taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get("", response_model=ShowPage, responses={**NOT_MODIFIED, **BEHIND})
async def list_shows(
    request: Request,
    read: ReadSideDep,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=NO_NUL, description="words of the title or description"),
    ] = None,
    category: Annotated[str | None, Query(max_length=50, pattern=NO_NUL)] = None,
    starts_from: Annotated[
        datetime | None, Query(alias="from", description="start, inclusive")
    ] = None,
    starts_before: Annotated[
        datetime | None, Query(alias="to", description="end, exclusive")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
    after: After = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Shows sorted by start time, optionally searched and filtered; `next_cursor` pages on.
    Answers carry an `ETag` (304 on a matching `If-None-Match`); `position` is the catalog's,
    so the tag changes whenever the catalog's position moves."""
    where = ShowFilter(
        text=(q or "").strip() or None,
        category=category,
        starts_from=_aware(starts_from),
        starts_before=_aware(starts_before),
    )
    if where.starts_from and where.starts_before and where.starts_from >= where.starts_before:
        raise ProblemError(422, "invalid-range", "`from` must be before `to`")
    keyset = decode_cursor(cursor)
    position = await caught_up(read, [CATALOG], after)
    rows = await query(read.models.shows, where, limit + 1, keyset)
    items = [
        ShowSummary(
            show_id=r["show_id"],
            title=r["title"],
            category=r["category"],
            venue=r["venue"],
            starts_at=r["starts_at"],
            status=r["status"],
            currency=r["currency"],
            price_from_cents=min(r["price_tiers"].values(), default=0),
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    last = items[-1] if items else None
    body = ShowPage(
        items=items,
        next_cursor=encode_cursor(last.starts_at, last.show_id) if more and last else None,
        position=position,
    ).model_dump_json()
    encoded = body.encode()
    return conditional(encoded, entity_tag(encoded), _tags(request, if_none_match))


def load_show_details(read: ReadSide, show_id: UUID, position: int) -> bytes | None:
    found = read.models.show(show_id)
    if found is None:
        return None
    show, rows = found
    # Prices as the catalog has them: the current ones, after any repricing.
    tiers = show["price_tiers"]
    sections = [
        SectionAvailability.of({**r, "price_cents": tiers.get(r["tier"], r["price_cents"])})
        for r in rows
    ]
    return (
        ShowDetails(
            **{k: show[k] for k in ShowDetails.model_fields if k in show},
            capacity=sum(s.capacity for s in sections),
            available=sum(s.available for s in sections),
            sections=sections,
            position=position,
        )
        .model_dump_json()
        .encode()
    )


def load_seat_map(read: ReadSide, show_id: UUID, position: int) -> bytes | None:
    # The catalog too (HotResource.models): a deleted show leaves it, its seat map with it.
    return read.models.seat_map_json(show_id, position)


SHOW_PAGE = HotResource("show", load_show_details)
SEAT_MAP_PAGE = HotResource("seats", load_seat_map)
# Path suffixes under /shows/{id} answered before the routing (read_api/hot_reads.py).
HOT_RESOURCES = {"": SHOW_PAGE, "/seats": SEAT_MAP_PAGE}
HOT = {**NOT_FOUND, **BEHIND, **NOT_MODIFIED}


async def _hot(
    request: Request,
    read: ReadSide,
    resource: HotResource,
    show_id: UUID,
    after: int | None,
    if_none_match: str | None,
) -> Response:
    hot: HotReads | None = hot_reads_of(request)
    assert hot is not None  # read is not None: the app serves read models
    answer, cache = await hot.answer(resource, show_id, after)
    return conditional(answer.body, answer.etag, _tags(request, if_none_match), cache)


def _tags(request: Request, first: str | None) -> str | None:
    """Every If-None-Match header line as one list (a client may send several)."""
    return ", ".join(request.headers.getlist("if-none-match")) or first


@router.get("/{show_id}", response_model=ShowDetails, responses=HOT)
async def show_details(
    show_id: UUID,
    request: Request,
    read: ReadSideDep,
    after: After = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """A show, its sale window, its organiser, its current prices and how many tickets each
    section has left (computed once per change of the show). A deleted show is not found.
    Answers carry an `ETag` and `Cache-Control: public, max-age=1`; 304 on a matching
    `If-None-Match`."""
    return await _hot(request, read, SHOW_PAGE, show_id, after, if_none_match)


@router.get("/{show_id}/seats", response_model=SeatMap, responses=HOT)
async def seat_map(
    show_id: UUID,
    request: Request,
    read: ReadSideDep,
    after: After = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Every seat of the show with its status, by section and row (computed once per change
    of the show). Answers carry an `ETag` and `Cache-Control: public, max-age=1`; 304 on a
    matching `If-None-Match`."""
    return await _hot(request, read, SEAT_MAP_PAGE, show_id, after, if_none_match)


@router.get("/{show_id}/stats", response_model=ShowStats, responses={**NOT_FOUND, **BEHIND})
async def show_stats(
    show_id: UUID, _: AdminUser, read: ReadSideDep, after: After = None
) -> ShowStats:
    """Sales statistics of a show (admin only)."""
    position = await caught_up(read, [SALES], after)
    row = await query(read.models.show_sales, show_id)
    if row is None:
        raise ProblemError(404, "not-found", "show not found")
    return ShowStats(
        **{k: row[k] for k in ShowStats.model_fields if k in row},
        revenue_cents=row["paid_cents"] - row["refunded_cents"],
        position=position,
    )
