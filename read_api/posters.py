"""A show's poster image (public): the stored image, or a generated placeholder.

The show comes from the catalog read model (a deleted show is gone from it: 404); which image
is current comes from the show's Poster stream in the event log (a handful of events), and the
bytes from the blob store. When the poster's image cannot be read (the blob store is down, or
its image is gone), the placeholder is answered instead, uncached."""

from __future__ import annotations

import asyncio
import hashlib
import re
import textwrap
from typing import Annotated, Any, Literal
from uuid import UUID
from xml.sax.saxutils import escape

from fastapi import APIRouter, Header, Query, Response

from commands.errors import BlobStoreUnavailableError, NotFoundError, StoreUnavailableError
from domain.poster import THUMB, Poster, blob_key, poster_id_for
from http_shell.container import Container
from http_shell.deps import ContainerDep
from http_shell.problems import ProblemError
from projections.registry import CATALOG
from read_api.deps import After, ReadSideDep, caught_up, query

router = APIRouter(prefix="/shows", tags=["queries"])

POSTER_CACHE = "public, max-age=300"
PLACEHOLDER_CACHE = "public, max-age=60"  # a poster may be uploaded any moment
SVG = "image/svg+xml"
# Image answers are never a document: no script runs in an SVG opened on its own, and
# browsers do not guess another type than the one named.
IMAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
}
BINARY = {"schema": {"type": "string", "format": "binary"}}
# Characters XML 1.0 cannot carry at all (escaping does not help): dropped from titles.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@router.get(
    "/{show_id}/poster",
    response_class=Response,
    responses={
        200: {
            "description": "the poster (image/webp) or, without one, a placeholder (SVG)",
            "content": {"image/webp": BINARY, SVG: BINARY},
        },
        304: {"description": "not modified: If-None-Match names the current ETag"},
        404: {"description": "`not-found`: no such show"},
        422: {"description": "`validation-error`: `size` is not `full` or `thumb`"},
    },
)
async def show_poster(
    show_id: UUID,
    read: ReadSideDep,
    container: ContainerDep,
    size: Annotated[
        Literal["full", "thumb"],
        Query(description="`full` (at most 2000 px a side) or `thumb` (400 px)"),
    ] = "full",
    if_none_match: Annotated[str | None, Header(max_length=2000)] = None,
    after: After = None,
) -> Response:
    """The show's poster, with an `ETag` (a hash of the image's bytes) and `Cache-Control`;
    `If-None-Match` with the current ETag answers 304. A show without a poster answers an SVG
    placeholder with its title (and an ETag of its own). Public. Errors: 404 `not-found`,
    422 `validation-error` (a `size` other than `full` or `thumb`)."""
    await caught_up(read, [CATALOG], after)
    found = await query(read.models.show, show_id)
    if found is None:
        raise ProblemError(404, "not-found", "show not found")
    title = str(found[0]["title"])
    poster = await asyncio.to_thread(_poster, container, show_id)
    cache = PLACEHOLDER_CACHE
    if poster is not None:
        etag = poster.etag(size)
        assert etag is not None  # a shown poster has both sizes
        if _matches(if_none_match, etag):
            return _not_modified(etag, POSTER_CACHE)
        image = await asyncio.to_thread(_image, container, blob_key(show_id, etag))
        if image is not None:
            return _image_answer(image[0], image[1], etag, POSTER_CACHE)
        cache = "no-store"  # the image could not be read: try again next time
    svg = placeholder_svg(title, size)
    etag = "placeholder-" + hashlib.sha256(svg).hexdigest()
    if _matches(if_none_match, etag):
        return _not_modified(etag, cache)
    return _image_answer(svg, SVG, etag, cache)


def _poster(container: Container, show_id: UUID) -> Poster | None:
    """The show's current poster; None without one (or when the log cannot be read)."""
    try:
        poster = container.store.get(poster_id_for(show_id), Poster)
    except (NotFoundError, StoreUnavailableError):
        return None
    return poster if poster.is_shown else None


def _image(container: Container, key: str) -> tuple[bytes, str] | None:
    if container.blobs is None:
        return None
    try:
        return container.blobs.get(key)
    except BlobStoreUnavailableError:
        return None


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match names this ETag (weak comparison, as RFC 9110 asks for it) or `*`."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or f'"{etag}"' in tags


def _not_modified(etag: str, cache: str) -> Response:
    return Response(status_code=304, headers={"ETag": f'"{etag}"', "Cache-Control": cache})


def _image_answer(data: bytes, content_type: str, etag: str, cache: str) -> Response:
    headers: dict[str, Any] = {"ETag": f'"{etag}"', "Cache-Control": cache, **IMAGE_HEADERS}
    return Response(content=data, media_type=content_type, headers=headers)


def placeholder_svg(title: str, size: str) -> bytes:
    """A poster-shaped (2:3) SVG with the title, escaped: a title is text, never markup."""
    width, height = (400, 600) if size == THUMB else (800, 1200)
    clean = " ".join(NOT_XML.sub("", title).split()) or "TicketBlitz"
    lines = textwrap.wrap(clean, width=16, max_lines=6, placeholder=" …") or [clean[:16]]
    first = 600 - (len(lines) - 1) * 40
    spans = "".join(
        f'<tspan x="400" y="{first + 80 * number}">{escape(line)}</tspan>'
        for number, line in enumerate(lines)
    )
    label = escape(clean, {'"': "&quot;"})
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 800 1200" role="img" aria-label="{label}">'
        '<rect width="800" height="1200" fill="#1e1b4b"/>'
        '<rect x="40" y="40" width="720" height="1120" fill="none" stroke="#a5b4fc" '
        'stroke-width="6"/>'
        '<text font-family="sans-serif" font-size="64" font-weight="bold" fill="#eef2ff" '
        f'text-anchor="middle">{spans}</text>'
        '<text x="400" y="1100" font-family="sans-serif" font-size="32" fill="#a5b4fc" '
        'text-anchor="middle">TicketBlitz</text>'
        "</svg>"
    ).encode()
