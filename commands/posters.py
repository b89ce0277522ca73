"""Handlers for a show's poster: upload (replace) and remove it.

The images go to the blob store first, under content-addressed keys, and only then is the
`Uploaded` event saved: a crash in between leaves an image nobody points at, never an event
pointing at nothing. Images a newer event no longer shows are deleted after it is saved (best
effort: a failure leaves an orphan, which costs space, not correctness).

Who: the show's organiser or an admin. A cancelled show's poster may still be changed (its
catalog page stays); a deleted show is unknown (404)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from commands.errors import (
    BlobStoreUnavailableError,
    ConcurrencyError,
    ForbiddenError,
    NotFoundError,
    VersionConflictError,
)
from commands.ports import BlobStore, EventStore
from domain.poster import Poster, blob_key, poster_id_for
from domain.show import DELETED, Show

log = logging.getLogger(__name__)

SAVE_ATTEMPTS = 3  # two first uploads race to create the stream: the loser tries again


@dataclass(frozen=True)
class PosterImage:
    """An encoded image, ready to store; `etag` is the hash of exactly these bytes."""

    data: bytes
    content_type: str
    width: int
    height: int
    etag: str


@dataclass(frozen=True)
class PosterImages:
    full: PosterImage
    thumb: PosterImage


class ImageProcessor(Protocol):
    def __call__(self, data: bytes, content_type: str) -> PosterImages:
        """Decode an upload and re-encode it (pixels only); InvalidImageError if it is not
        an image this system accepts."""
        ...


@dataclass(frozen=True)
class PosterStored:
    show_id: UUID
    etag_full: str
    etag_thumb: str
    width: int
    height: int
    content_type: str
    position: int


class PosterCommands:
    def __init__(self, store: EventStore, blobs: BlobStore, process: ImageProcessor) -> None:
        self._store = store
        self._blobs = blobs
        self._process = process

    def upload(
        self, show_id: UUID, data: bytes, content_type: str, by: UUID, is_admin: bool
    ) -> PosterStored:
        """Decode, re-encode and store the image, then record it as the show's poster."""
        self._managed_show(show_id, by, is_admin)  # before the costly decoding
        images = self._process(data, content_type)
        for image in (images.full, images.thumb):
            self._blobs.put(blob_key(show_id, image.etag), image.data, image.content_type)
        for _ in range(SAVE_ATTEMPTS):
            poster = self._poster(show_id)
            before = poster.keys()
            poster.upload(
                etag_full=images.full.etag,
                etag_thumb=images.thumb.etag,
                width=images.full.width,
                height=images.full.height,
                content_type=images.full.content_type,
                uploaded_by=by,
            )
            try:
                position = self._store.save(poster)
            except VersionConflictError:
                continue
            self._forget(before - poster.keys())
            return PosterStored(
                show_id=show_id,
                etag_full=images.full.etag,
                etag_thumb=images.thumb.etag,
                width=images.full.width,
                height=images.full.height,
                content_type=images.full.content_type,
                position=position,
            )
        raise ConcurrencyError(f"the poster of show {show_id} kept changing; try again")

    def remove(self, show_id: UUID, by: UUID, is_admin: bool) -> int:
        """Back to the placeholder (no poster: nothing happens); the log position."""
        self._managed_show(show_id, by, is_admin)
        for _ in range(SAVE_ATTEMPTS):
            try:
                poster = self._store.get(poster_id_for(show_id), Poster)
            except NotFoundError:
                return self._store.head_position()
            before = poster.keys()
            poster.remove(removed_by=by)
            try:
                position = self._store.save(poster)
            except VersionConflictError:
                continue
            self._forget(before)
            return position
        raise ConcurrencyError(f"the poster of show {show_id} kept changing; try again")

    def check_manager(self, show_id: UUID, by: UUID, is_admin: bool) -> None:
        """Refuse early (before an upload's body is read) whoever may not change the
        poster: NotFoundError for an unknown or deleted show, ForbiddenError for others."""
        self._managed_show(show_id, by, is_admin)

    def _managed_show(self, show_id: UUID, by: UUID, is_admin: bool) -> Show:
        show = self._store.get(show_id, Show)
        if show.status == DELETED:
            raise NotFoundError("Show", show_id)
        if not show.is_managed_by(by, is_admin):
            raise ForbiddenError(f"show {show_id} is managed by its organiser or an admin")
        return show

    def _poster(self, show_id: UUID) -> Poster:
        try:
            return self._store.get(poster_id_for(show_id), Poster)
        except NotFoundError:
            return Poster(show_id=show_id)

    def _forget(self, keys: set[str]) -> None:
        for key in keys:
            try:
                self._blobs.delete(key)
            except BlobStoreUnavailableError:
                log.warning("could not delete the superseded poster image %s", key)
