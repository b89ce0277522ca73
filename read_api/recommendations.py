"""Recommendation queries: `/me/recommendations` (customers) and `/shows/{id}/similar`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from fastapi import APIRouter, Query, Request
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field

from commands.errors import StoreUnavailableError
from http_shell.deps import CurrentUser
from http_shell.problems import ProblemError
from infra.log_follower import wait_for_position
from read_api.deps import After, refuse_unknown_position
from recommender.pitch import Pitch, PitchWriter
from recommender.projection import FOLLOWER
from recommender.queries import Recommendations, Recommender, Source, write_pitch

router = APIRouter(tags=["recommendations"])

RecLimit = Annotated[int, Query(ge=1, le=50, description="how many shows")]
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such show"},
    503: {"description": "recommendations are unavailable or not caught up (see Retry-After)"},
}


class RecommendedShow(BaseModel):
    show_id: UUID
    title: str
    category: str
    venue: str
    starts_at: datetime
    score: float | None = None


class PitchAnswer(BaseModel):
    text: str
    shows: list[str]
    source: Literal["llm", "template"]


class RecommendationPage(BaseModel):
    source: Source = Field(
        description="the tier that answered: `vector` (nearest by embedding), `popular` (most "
        "booked), `fulltext` (similar shows by words, while a show awaits its embedding), "
        "`cache` (the last vector answer, while vector search is slow or failing)"
    )
    items: list[RecommendedShow]
    pitch: PitchAnswer | None = None  # with `explain=true`


def _answer(found: Recommendations) -> RecommendationPage:
    return RecommendationPage(
        source=found.source,
        items=[RecommendedShow(**vars(item)) for item in found.items],
    )


def _unavailable() -> ProblemError:
    return ProblemError(503, "unavailable", "recommendations are unavailable", {"Retry-After": "2"})


async def _ready(request: Request, after: int | None) -> Recommender:
    recommender: Recommender | None = getattr(request.app.state.container, "recommender", None)
    if recommender is None:
        raise _unavailable()
    if after is not None:
        wait = request.app.state.container.settings.read_wait_seconds
        try:
            head = await asyncio.to_thread(recommender.store.head_position)
            refuse_unknown_position(after, head)
            reached = await asyncio.to_thread(
                wait_for_position, recommender.store, [FOLLOWER], after, wait
            )
        except (psycopg.OperationalError, PoolTimeout, StoreUnavailableError) as error:
            raise _unavailable() from error
        if not reached:
            raise ProblemError(
                503,
                "not-caught-up",
                f"recommendations have not reached position {after} yet; retry shortly",
                {"Retry-After": "1"},
            )
    return recommender


async def _run(function: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(function, *args)
    except (psycopg.OperationalError, PoolTimeout) as error:
        raise _unavailable() from error


@router.get("/me/recommendations", response_model=RecommendationPage, responses=RESPONSES)
async def my_recommendations(
    request: Request,
    user: CurrentUser,
    limit: RecLimit = 10,
    after: After = None,
    explain: Annotated[
        bool, Query(description="add a short pitch, grounded on the shows recommended")
    ] = False,
) -> RecommendationPage:
    """Upcoming shows on sale nearest to the shows the caller booked (`source: vector`), or
    the most booked ones for a customer with no confirmed booking yet (`source: popular`).
    While vector search is slow or failing, the caller's last vector answer (`source: cache`),
    else the popular shows. Only customers book, so only they have recommendations (403)."""
    if user.role != "customer":
        raise ProblemError(
            403,
            "forbidden",
            "recommendations are for customers, made from their bookings; this"
            f" {user.role} account books no tickets and has none",
        )
    recommender = await _ready(request, after)
    found: Recommendations = await _run(recommender.for_customer, user.account_id, limit)
    page = _answer(found)
    writer: PitchWriter | None = getattr(request.app.state.container, "pitch_writer", None)
    if explain and writer is not None:
        pitch: Pitch = await _run(write_pitch, recommender, writer, user.account_id, found)
        page.pitch = PitchAnswer(text=pitch.text, shows=pitch.shows, source=pitch.source)
    return page


@router.get("/shows/{show_id}/similar", response_model=RecommendationPage, responses=RESPONSES)
async def similar_shows(
    show_id: UUID, request: Request, limit: RecLimit = 10, after: After = None
) -> RecommendationPage:
    """Upcoming shows on sale most like this one (anyone may ask): by embedding (`vector`);
    by genre and words (`fulltext`) while the show awaits its embedding or vector search
    fails with no cached answer (`cache`)."""
    recommender = await _ready(request, after)
    found: Recommendations | None = await _run(recommender.similar, show_id, limit)
    if found is None:
        raise ProblemError(404, "not-found", "show not found")
    return _answer(found)
