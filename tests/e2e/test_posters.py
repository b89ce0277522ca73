"""Posters: organisers upload JPEG/PNG/WebP images that are re-encoded to pixels only; anyone
reads them with ETags and 304s; a show without one gets a placeholder; bad files are a 422."""

from __future__ import annotations

import http.client
import io
import os
import select
import socket
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4
from xml.etree import ElementTree

import pytest
from PIL import Image
from pydantic import SecretStr

from audit.verify import verify
from commands.ports import BlobStore
from domain.poster import blob_key, poster_id_for
from http_shell.container import Container
from infra.s3_blobs import S3BlobStore
from tests.e2e.conftest import Api, served, settings_for_tests
from tests.e2e.saga_support import wait_until
from tests.integration.s3_support import CREDENTIALS, moto_server
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

MB = 1024 * 1024
GPS_IFD = 0x8825


# --- Images, made here with Pillow ----------------------------------------------------------


def jpeg_with_gps(width: int = 3000, height: int = 1500) -> bytes:
    """A camera photo: EXIF with the maker and a GPS position (Paris)."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Industries"
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=90)
    return buffer.getvalue()


def png(width: int = 900, height: int = 1200, mode: str = "RGBA") -> bytes:
    image = Image.linear_gradient("L").resize((width, height)).convert(mode)
    if mode == "RGBA":
        image.putalpha(128)  # see-through: the transparency must survive
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def noisy_png(width: int = 600, height: int = 600) -> bytes:
    """Random pixels: does not compress, so that a cut one is missing real image data."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def webp(width: int = 640, height: int = 960) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 60)).save(buffer, "WEBP")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def png_bomb(side: int = 8000) -> bytes:
    """A real, valid PNG of side x side black pixels (64 MP): about 60 KB that decode huge."""
    raw = (b"\x00" * (side + 1)) * side
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


# --- Helpers ---------------------------------------------------------------------------------


def show_body(title: str | None = None) -> dict[str, Any]:
    return {
        "title": title or f"Poster Night {uuid4().hex[:6]}",
        "description": "A show with a poster.",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": "2027-03-01T20:00:00+01:00",
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 5}]}
        ],
    }


def new_show(api: Api, headers: dict[str, str], title: str | None = None) -> str:
    r = api.http.post(
        "/shows", json=show_body(title), headers={"Authorization": headers["Authorization"]}
    )
    assert r.status_code == 201, r.text
    show_id: str = r.json()["show_id"]
    # The poster's GET reads the show from the catalog: wait for it there.
    r = api.http.get(f"/shows/{show_id}", params={"after": r.json()["position"]})
    assert r.status_code == 200, r.text
    return show_id


def put_poster(api: Api, show: str, data: bytes, content_type: str, who: dict[str, str]) -> Any:
    headers = {"Authorization": who["Authorization"], "Content-Type": content_type}
    return api.http.put(f"/shows/{show}/poster", content=data, headers=headers)


def problem_type(answer: Any) -> str:
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    kind: str = answer.json()["type"]
    return kind.rsplit("/", 1)[-1]


def blobs_of(container: Container) -> BlobStore:
    assert container.blobs is not None
    return container.blobs


@pytest.fixture(scope="module")
def organizer(api: Api) -> dict[str, str]:
    return api.new_account("organizer")


# --- Good images ----------------------------------------------------------------------------


def test_a_jpeg_is_stored_as_pixels_only_without_its_gps_position(
    api: Api, organizer: dict[str, str], container: Container
):
    photo = jpeg_with_gps()
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(GPS_IFD)  # the upload has a position
    show = new_show(api, organizer)

    r = put_poster(api, show, photo, "image/jpeg", organizer)

    assert r.status_code == 200, r.text
    stored = r.json()
    assert (stored["width"], stored["height"]) == (2000, 1000)  # at most 2000 px a side
    assert stored["content_type"] == "image/webp"
    full = api.http.get(f"/shows/{show}/poster")
    assert full.status_code == 200
    assert full.headers["content-type"] == "image/webp"
    assert full.headers["etag"] == f'"{stored["etag_full"]}"'
    assert full.headers["cache-control"].startswith("public")
    assert full.headers["x-content-type-options"] == "nosniff"
    image = Image.open(io.BytesIO(full.content))
    assert image.format == "WEBP" and image.size == (2000, 1000)
    assert len(image.getexif()) == 0 and "exif" not in image.info
    assert b"Exif" not in full.content and b"SpyCam" not in full.content
    # The bytes served are the bytes stored, under a key named by their hash.
    blob = blobs_of(container).get(blob_key(UUID(show), stored["etag_full"]))
    assert blob == (full.content, "image/webp")

    thumb = api.http.get(f"/shows/{show}/poster", params={"size": "thumb"})
    assert thumb.status_code == 200
    assert thumb.headers["etag"] == f'"{stored["etag_thumb"]}"'
    assert Image.open(io.BytesIO(thumb.content)).size == (400, 200)
    assert len(thumb.content) < len(full.content)


@pytest.mark.parametrize(
    ("make", "content_type", "mode", "size"),
    [
        (lambda: png(900, 1200, "RGBA"), "image/png", "RGBA", (900, 1200)),
        (lambda: png(4000, 3000, "RGB"), "image/png", "RGB", (2000, 1500)),
        (lambda: webp(640, 960), "image/webp", "RGB", (640, 960)),
    ],
)
def test_png_and_webp_posters_are_accepted(api: Api, make, content_type, mode, size):
    show = api.new_show(open_sale=False)  # the admin's show: an admin may upload too

    r = put_poster(api, show, make(), content_type, api.admin())

    assert r.status_code == 200, r.text
    image = Image.open(io.BytesIO(api.http.get(f"/shows/{show}/poster").content))
    assert image.mode == mode and image.size == size  # transparency kept, big ones shrunk
    thumb = Image.open(io.BytesIO(api.http.get(f"/shows/{show}/poster?size=thumb").content))
    assert max(thumb.size) == 400


def test_etags_answer_304_until_the_poster_changes(api: Api, organizer: dict[str, str]):
    show = new_show(api, organizer)
    first = put_poster(api, show, png(), "image/png", organizer).json()
    etag = f'"{first["etag_full"]}"'

    not_modified = api.http.get(f"/shows/{show}/poster", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    listed = f'"other", W/{etag}'  # a list, and a weak validator: still the same image
    assert (
        api.http.get(f"/shows/{show}/poster", headers={"If-None-Match": listed}).status_code == 304
    )
    assert (
        api.http.get(f"/shows/{show}/poster", headers={"If-None-Match": '"x"'}).status_code == 200
    )

    again = put_poster(api, show, png(), "image/png", organizer)  # the same image: no change
    assert again.json()["etag_full"] == first["etag_full"]
    second = put_poster(api, show, webp(), "image/webp", organizer).json()
    assert second["etag_full"] != first["etag_full"]
    changed = api.http.get(f"/shows/{show}/poster", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] == f'"{second["etag_full"]}"'


# --- The placeholder --------------------------------------------------------------------------


def test_a_show_without_a_poster_gets_a_placeholder_with_its_title_as_text(
    api: Api, organizer: dict[str, str]
):
    hostile = '<script>alert("x")</script> & <img src=x onerror=alert(1)> Jazz'
    show = new_show(api, organizer, title=hostile)

    r = api.http.get(f"/shows/{show}/poster")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert b"<script" not in r.content and b"<img" not in r.content
    svg = ElementTree.fromstring(r.content)  # well-formed XML
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert {e.tag.rsplit("}", 1)[-1] for e in svg.iter()} <= {"svg", "rect", "text", "tspan"}
    assert "".join(svg.itertext()).startswith("<script>alert")  # the title, as text
    assert svg.get("aria-label") == hostile
    etag = r.headers["etag"]
    cached = api.http.get(f"/shows/{show}/poster", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    thumb = api.http.get(f"/shows/{show}/poster", params={"size": "thumb"})
    assert thumb.headers["etag"] != etag  # a smaller placeholder, its own ETag


def test_a_removed_poster_brings_the_placeholder_back(api: Api, organizer: dict[str, str]):
    show = new_show(api, organizer)
    assert put_poster(api, show, png(), "image/png", organizer).status_code == 200
    headers = {"Authorization": organizer["Authorization"]}

    assert api.http.delete(f"/shows/{show}/poster", headers=headers).status_code == 204

    r = api.http.get(f"/shows/{show}/poster")
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert api.http.delete(f"/shows/{show}/poster", headers=headers).status_code == 204


# --- Bad files ------------------------------------------------------------------------------


def _truncated_png() -> bytes:
    whole = noisy_png()
    return whole[: len(whole) // 2]


BAD_FILES = {
    "truncated png": (_truncated_png, "image/png"),
    "pdf renamed .png": (lambda: PDF, "image/png"),
    "header claiming 100000x100000": (lambda: png_claiming(100_000, 100_000), "image/png"),
    "small file decoding to 64 MP": (png_bomb, "image/png"),
    "empty body": (lambda: b"", "image/png"),
    "jpeg sent as png": (jpeg_with_gps, "image/png"),
    "png sent as pdf": (png, "application/pdf"),
    "gif content type": (png, "image/gif"),
    "no content type": (png, ""),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_are_422_invalid_image_and_store_nothing(
    api: Api, organizer: dict[str, str], container: Container, name: str
):
    make, content_type = BAD_FILES[name]
    show = new_show(api, organizer)

    r = put_poster(api, show, make(), content_type, organizer)

    assert r.status_code == 422, r.text
    assert problem_type(r) == "invalid-image"
    assert not container.store.exists(poster_id_for(UUID(show)))
    assert api.http.get(f"/shows/{show}/poster").headers["content-type"].startswith("image/svg")


@dataclass(frozen=True)
class RawAnswer:
    status: int
    body: bytes
    sent: int  # body bytes the server's socket took before its answer came


def put_raw(
    base_url: str, path: str, headers: dict[str, str], pieces: Iterable[bytes]
) -> RawAnswer:
    """PUT a body piece by piece over a socket; stop sending once the server answers."""
    url = urlsplit(base_url + path)
    assert url.hostname is not None and url.port is not None
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    try:
        head = [f"PUT {url.path} HTTP/1.1", f"Host: {url.hostname}:{url.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        try:
            for piece in pieces:
                sock.sendall(piece)
                sent += len(piece)
                if select.select([sock], [], [], 0)[0]:
                    break  # answered before the body ended
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server stopped reading: its answer waits in the socket
        response = http.client.HTTPResponse(sock)
        response.begin()
        return RawAnswer(response.status, response.read(), sent)
    finally:
        sock.close()


def chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield from (b"%x\r\n%s\r\n" % (size, b"\x89" * size) for _ in range(total // size))
    yield b"0\r\n\r\n"


def test_a_6_mb_body_is_413(api: Api, organizer: dict[str, str], container: Container):
    show = new_show(api, organizer)
    body = png()[:64] + b"\x00" * (6 * MB)
    headers = {
        "Authorization": organizer["Authorization"],
        "Content-Type": "image/png",
        "Content-Length": str(len(body)),
    }

    answer = put_raw(
        api.base_url,
        f"/shows/{show}/poster",
        headers,
        [body[i : i + 65536] for i in range(0, len(body), 65536)],
    )

    assert answer.status == 413, answer.body[:300]
    assert b"payload-too-large" in answer.body
    assert not container.store.exists(poster_id_for(UUID(show)))


def test_a_chunked_100_mb_body_is_413_before_it_is_read_whole(
    api: Api, organizer: dict[str, str], container: Container
):
    show = new_show(api, organizer)
    headers = {
        "Authorization": organizer["Authorization"],
        "Content-Type": "image/png",
        "Transfer-Encoding": "chunked",
    }

    answer = put_raw(api.base_url, f"/shows/{show}/poster", headers, chunked(100 * MB))

    assert answer.status == 413, answer.body[:300]
    assert b"payload-too-large" in answer.body
    # Refused near the limit: most of the body was never sent (kernel buffers take some MB).
    assert answer.sent < 32 * MB, answer.sent
    assert not container.store.exists(poster_id_for(UUID(show)))


# --- Who may ----------------------------------------------------------------------------------


def test_only_the_shows_organiser_or_an_admin_may_change_its_poster(
    api: Api, organizer: dict[str, str]
):
    show = new_show(api, organizer)
    customer = api.new_customer()
    other = api.new_account("organizer")

    for stranger in (customer, other):
        r = put_poster(api, show, png(), "image/png", stranger)
        assert r.status_code == 403, r.text
        assert problem_type(r) == "forbidden"
        r = api.http.delete(
            f"/shows/{show}/poster", headers={"Authorization": stranger["Authorization"]}
        )
        assert r.status_code == 403, r.text
    anonymous = api.http.put(
        f"/shows/{show}/poster", content=png(), headers={"Content-Type": "image/png"}
    )
    assert anonymous.status_code == 401
    assert put_poster(api, show, png(), "image/png", api.admin()).status_code == 200
    assert put_poster(api, show, webp(), "image/webp", organizer).status_code == 200


def test_unknown_shows_are_404_and_a_bad_size_is_422(api: Api, organizer: dict[str, str]):
    unknown = uuid4()
    r = put_poster(api, str(unknown), png(), "image/png", organizer)
    assert r.status_code == 404 and problem_type(r) == "not-found"
    r = api.http.get(f"/shows/{unknown}/poster")
    assert r.status_code == 404 and problem_type(r) == "not-found"
    show = new_show(api, organizer)
    r = api.http.get(f"/shows/{show}/poster", params={"size": "huge"})
    assert r.status_code == 422


def test_a_deleted_shows_poster_is_gone(api: Api, organizer: dict[str, str]):
    show = new_show(api, organizer)
    assert put_poster(api, show, png(), "image/png", organizer).status_code == 200
    headers = {"Authorization": organizer["Authorization"]}
    assert api.http.delete(f"/shows/{show}", headers=headers).status_code == 204

    r = put_poster(api, show, png(), "image/png", organizer)
    assert r.status_code == 404 and problem_type(r) == "not-found"
    wait_until(
        lambda: api.http.get(f"/shows/{show}/poster").status_code == 404,
        10,
        "the deleted show to leave the catalog",
    )


# --- The log ----------------------------------------------------------------------------------


def test_poster_events_are_in_the_log_and_pass_the_audit(
    api: Api, organizer: dict[str, str], container: Container
):
    show = new_show(api, organizer)
    put_poster(api, show, png(), "image/png", organizer)
    first = put_poster(api, show, jpeg_with_gps(), "image/jpeg", organizer).json()
    headers = {"Authorization": organizer["Authorization"]}
    assert api.http.delete(f"/shows/{show}/poster", headers=headers).status_code == 204

    r = api.http.get(f"/admin/streams/{poster_id_for(UUID(show))}/events", headers=api.admin())
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    assert [e["type"].rsplit(".", 1)[-1] for e in events] == [
        "Created",
        "Uploaded",
        "Uploaded",
        "Removed",
    ]
    uploaded = events[2]["payload"]
    assert uploaded["etag_full"] == first["etag_full"]
    assert (uploaded["width"], uploaded["height"]) == (2000, 1000)
    assert uploaded["uploaded_by"] == organizer["account_id"]
    # The superseded images are deleted from the blob store once nothing shows them.
    assert blobs_of(container).get(blob_key(UUID(show), first["etag_full"])) is None

    report = verify(container.store, refund_grace=timedelta(minutes=15))

    assert report.violation_count == 0, report.violations[:5]


# --- The S3 adapter, as compose.yaml deploys it (MinIO there, moto's server here) -------------


def test_posters_go_to_the_s3_store_when_the_settings_say_so(
    api: Api,
    organizer: dict[str, str],
    container: Container,
    endpoints: StackEndpoints,
    stack_dir: Path,
    tmp_path: Path,
):
    bucket = f"posters-{uuid4().hex[:12]}"
    with moto_server(tmp_path) as s3_url:
        settings = settings_for_tests(
            endpoints,
            stack_dir / f"app-s3-{uuid4().hex[:6]}",
            blob_store="s3",
            s3_endpoint_url=s3_url,
            s3_bucket=bucket,
            s3_access_key_id="testing",
            s3_secret_access_key=SecretStr("testing"),
        )
        s3_container = bootstrap(settings)  # the same database; its own blob store
        try:
            with served(s3_container) as s3_api:
                show = new_show(api, organizer)
                r = put_poster(s3_api, show, jpeg_with_gps(), "image/jpeg", organizer)
                assert r.status_code == 200, r.text
                full = s3_api.http.get(f"/shows/{show}/poster")
                assert full.headers["etag"] == f'"{r.json()["etag_full"]}"'
        finally:
            s3_container.close()
        key = blob_key(UUID(show), r.json()["etag_full"])
        assert S3BlobStore(bucket, s3_url, **CREDENTIALS).get(key) == (full.content, "image/webp")
        assert blobs_of(container).get(key) is None  # not in PostgreSQL
