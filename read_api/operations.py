"""Operations: where each read model is in the log, and how far behind."""

from __future__ import annotations

from fastapi import APIRouter

from projections.registry import PROJECTIONS
from read_api.deps import After, ReadSideDep, caught_up, query
from read_api.models import FollowerFailurePublic, ProjectionPublic, ProjectionsReport

router = APIRouter(tags=["operations"])


@router.get("/projections", response_model=ProjectionsReport)
async def projections(read: ReadSideDep, after: After = None) -> ProjectionsReport:
    """Each read model's generation and position, the store's head, the lag in events and in
    seconds (the age of the oldest event a read model has not applied yet), and any log
    follower stopped on an event it cannot apply (`failing`, `failed_position`, `error`)."""
    await caught_up(read, list(PROJECTIONS), after)
    head, statuses = await query(read.statuses)
    failures = await query(read.follower_failures)
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
                failing=s.failing,
                failed_position=s.failed_position,
                error=s.error,
                failures=s.failures,
                skips=s.skips,
                dead_letters=s.dead_letters,
            )
            for s in statuses
        ],
        failing_followers=[
            FollowerFailurePublic(
                name=f.name,
                failed_position=f.position,
                error=f.error,
                failures=f.attempts,
                skips=f.skips,
                first_failed_at=f.first_failed_at,
                last_failed_at=f.last_failed_at,
            )
            for f in failures.values()
        ],
    )
