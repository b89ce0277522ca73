"""Conditional GETs of public reads: a strong entity tag from the body's bytes, If-None-Match as
RFC 9110 (13.1.2) has it, and the Cache-Control that lets browsers and CDNs keep an answer for a
second and then revalidate it (a 304 costs the server no body and the client no download).

The tag is a hash of the exact bytes sent, so it changes whenever the body does (and two
processes that computed the same body give the same tag)."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.responses import Response

# Short: a seat map changes while a show sells; a fan refreshing sees at most a second-old
# map before revalidating (cheap: a 304). `s-maxage` says the same to shared caches (CDNs).
CACHE_CONTROL = "public, max-age=1, s-maxage=1"
JSON = "application/json"

# An entity tag in an If-None-Match list: `"opaque"` or `W/"opaque"` (weak comparison).
_TAG = re.compile(r'(?:W/)?"([^"]*)"')


def entity_tag(body: bytes) -> str:
    """The strong entity tag of a body (quoted, 16 URL-safe characters)."""
    digest = hashlib.blake2b(body, digest_size=12).digest()
    return '"' + base64.urlsafe_b64encode(digest).decode() + '"'


def none_match(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match value matches `etag`, by weak comparison: `*` matches any
    current representation, a list matches if any of its tags does (weak ones included);
    anything unparseable matches nothing (the full answer is sent)."""
    if header is None:
        return False
    if header == etag:  # what clients send back almost always
        return True
    if header.strip() == "*":
        return True
    opaque = etag[1:-1]
    return any(tag == opaque for tag in _TAG.findall(header))


def conditional(
    body: bytes, etag: str, if_none_match: str | None, cache: str | None = None
) -> Response:
    """The JSON answer, or 304 Not Modified (with the same validators, no body) when the
    client already has it; `cache` is the X-Cache header (hit, miss or bypass), if any."""
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if cache is not None:
        headers["X-Cache"] = cache
    if none_match(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=JSON, headers=headers)
