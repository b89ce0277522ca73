"""Operations: where each read model is in the log, and how far behind."""

from __future__ import annotations

from fastapi import APIRouter

from projections.registry import PROJECTIONS
from read_api.deps import After, ReadSideDep, caught_up, query
from read_api.models import ProjectionPublic, ProjectionsReport

router = APIRouter(tags=["operations"])


@router.get("/projections", response_model=ProjectionsReport)
async def projections(read: ReadSideDep, after: After = None) -> ProjectionsReport:
    """Each read model's generation and position, the store's head, and the lag in events
    and in seconds (the age of the oldest event a read model has not applied yet)."""
    await caught_up(read, list(PROJECTIONS), after)
    head, statuses = await query(read.statuses)
    return ProjectionsReport(
        head=head,
        projections=[
            ProjectionPublic(
                name=s.projection,
                generation=s.generation,
                position=s.position,
                lag_events=s.lag_events,
                lag_seconds=round(s.lag_seconds, 3),
                rebuilding_generation=s.rebuilding_generation,
                rebuilding_position=s.rebuilding_position,
                stale=s.stale,
            )
            for s in statuses
        ],
    )
