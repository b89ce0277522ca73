"""A show's poster: upload (replace) or remove it (the show's organiser or an admin)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from commands.errors import InvalidImageError
from commands.posters import PosterCommands
from http_shell.container import Container
from http_shell.deps import ContainerDep, OrganizerUser
from http_shell.problems import ProblemError
from infra.images import FORMATS, MAX_UPLOAD_BYTES, media_type

router = APIRouter(prefix="/shows", tags=["shows"])

# The upload's path under the API prefix, and its body limit (ticketblitz/web.py lets these
# bodies past the general limit; the endpoint counts them again as they stream in).
POSTER_PATH = r"/shows/[^/]+/poster"
POSTER_UPLOAD_BYTES = MAX_UPLOAD_BYTES

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the image itself (not multipart), at most 5 MiB",
        "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in FORMATS},
    }
}
MANAGED: dict[int | str, dict[str, Any]] = {
    401: {"description": "`unauthorized`: no or an invalid access token"},
    403: {"description": "`forbidden`: not the show's organiser nor an admin"},
    404: {"description": "`not-found`: no such show (or it was deleted)"},
    503: {"description": "`blobs-unavailable`: the image store cannot be reached"},
}


class PosterUploaded(BaseModel):
    show_id: UUID
    etag_full: str  # the ETag of GET /shows/{id}/poster?size=full (unquoted)
    etag_thumb: str
    width: int  # of the full size
    height: int
    content_type: str  # what is stored and served: image/webp
    position: int


@router.put(
    "/{show_id}/poster",
    response_model=PosterUploaded,
    openapi_extra=IMAGE_BODY,
    responses={
        **MANAGED,
        413: {"description": "`payload-too-large`: the body is over 5 MiB (not read further)"},
        422: {
            "description": "`invalid-image`: not a JPEG, PNG or WebP image of the Content-Type "
            "it was sent with (empty, truncated, another format, over 40 megapixels decoded)"
        },
    },
)
async def upload_poster(
    show_id: UUID, request: Request, user: OrganizerUser, container: ContainerDep
) -> PosterUploaded:
    """Upload or replace the show's poster. The body is the raw image (JPEG, PNG or WebP, at
    most 5 MiB) with its Content-Type `image/jpeg`, `image/png` or `image/webp`. It is decoded
    and re-encoded (WebP, at most 2000 px a side, and a 400 px thumbnail), so nothing but its
    pixels is kept: EXIF, GPS positions and other metadata are dropped. Uploading the same
    image again changes nothing. Allowed on a cancelled show (its catalog page stays).

    Errors: 403 `forbidden` (not the show's organiser nor an admin), 404 `not-found`, 413
    `payload-too-large`, 422 `invalid-image` (another Content-Type, empty, truncated, not the
    format named, over 40 megapixels), 503 `blobs-unavailable`."""
    posters = _posters(container)
    content_type = request.headers.get("content-type", "")
    if media_type(content_type) not in FORMATS:
        raise InvalidImageError(
            "send the image as the body with Content-Type image/jpeg, image/png or image/webp"
        )
    # Who may, before a single byte of the body is read.
    await run_in_threadpool(posters.check_manager, show_id, user.account_id, user.is_admin)
    data = await _image_within_limit(request)
    stored = await run_in_threadpool(
        posters.upload, show_id, data, content_type, user.account_id, user.is_admin
    )
    return PosterUploaded(**vars(stored))


@router.delete("/{show_id}/poster", status_code=status.HTTP_204_NO_CONTENT, responses={**MANAGED})
async def remove_poster(show_id: UUID, user: OrganizerUser, container: ContainerDep) -> Response:
    """Remove the show's poster: the placeholder is shown again (no poster: nothing
    happens). Errors: 403 `forbidden`, 404 `not-found`."""
    posters = _posters(container)
    await run_in_threadpool(posters.remove, show_id, user.account_id, user.is_admin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _posters(container: Container) -> PosterCommands:
    if container.posters is None:
        raise ProblemError(503, "unavailable", "posters are not configured")
    return container.posters


async def _image_within_limit(request: Request) -> bytes:
    """The body, counted while it streams in: one over the limit (declared or chunked) is
    refused as soon as the limit is passed, never read whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > POSTER_UPLOAD_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > POSTER_UPLOAD_BYTES:
            raise _too_large()
    return bytes(body)


def _too_large() -> HTTPException:
    detail = f"posters are limited to {POSTER_UPLOAD_BYTES} bytes"
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail, {"Connection": "close"})
