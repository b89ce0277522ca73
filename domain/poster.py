"""Poster: the image a show is advertised with. One stream per show (`poster_id_for`).

The events only point at images kept in a blob store, under content-addressed keys
(`blob_key`): a key's bytes never change, so an `Uploaded` event always means the same pixels.
The images themselves are decoded and re-encoded before they get here (infra/images.py)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.ids import TICKETBLITZ_NAMESPACE

FULL = "full"
THUMB = "thumb"
SIZES = (FULL, THUMB)


def poster_id_for(show_id: UUID) -> UUID:
    """One poster stream per show: two first uploads collide on the same stream."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"poster:{show_id}")


def blob_key(show_id: UUID, etag: str) -> str:
    """Where an image is kept: named by the show and the hash of its bytes."""
    return f"posters/{show_id}/{etag}"


class Poster(Aggregate):
    @event("Created")
    def __init__(self, show_id: UUID) -> None:
        self.show_id = show_id
        # The current images' hashes (None: no poster, the placeholder is shown).
        self.etag_full: str | None = None
        self.etag_thumb: str | None = None
        self.width = 0  # of the full-size image
        self.height = 0
        self.content_type: str | None = None
        self.uploaded_by: UUID | None = None

    @staticmethod
    def create_id(show_id: UUID, **_: Any) -> UUID:
        return poster_id_for(show_id)

    @property
    def is_shown(self) -> bool:
        return self.etag_full is not None

    def etag(self, size: str) -> str | None:
        return self.etag_thumb if size == THUMB else self.etag_full

    def keys(self) -> set[str]:
        """The blob keys the current poster uses."""
        etags = (self.etag_full, self.etag_thumb)
        return {blob_key(self.show_id, etag) for etag in etags if etag is not None}

    def upload(
        self,
        etag_full: str,
        etag_thumb: str,
        width: int,
        height: int,
        content_type: str,
        uploaded_by: UUID,
    ) -> bool:
        """Show these images (already stored under their keys); the same images again change
        nothing (False: no event)."""
        if width < 1 or height < 1:
            raise ValueError("a poster has pixels")
        if (etag_full, etag_thumb) == (self.etag_full, self.etag_thumb):
            return False
        self._uploaded(
            etag_full=etag_full,
            etag_thumb=etag_thumb,
            width=width,
            height=height,
            content_type=content_type,
            uploaded_by=uploaded_by,
        )
        return True

    @event("Uploaded")
    def _uploaded(
        self,
        etag_full: str,
        etag_thumb: str,
        width: int,
        height: int,
        content_type: str,
        uploaded_by: UUID,
    ) -> None:
        self.etag_full = etag_full
        self.etag_thumb = etag_thumb
        self.width = width
        self.height = height
        self.content_type = content_type
        self.uploaded_by = uploaded_by

    def remove(self, removed_by: UUID) -> bool:
        """Back to the placeholder; removing no poster changes nothing (False: no event)."""
        if not self.is_shown:
            return False
        self._removed(removed_by=removed_by)
        return True

    @event("Removed")
    def _removed(self, removed_by: UUID) -> None:
        self.etag_full = None
        self.etag_thumb = None
        self.width = 0
        self.height = 0
        self.content_type = None
        self.uploaded_by = None
