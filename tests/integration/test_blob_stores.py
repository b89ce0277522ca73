"""The blob store adapters keep the same contract: PostgreSQL (the embedded default) and S3,
the latter against a real S3-compatible server (moto's server mode, a subprocess)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from pydantic import SecretStr

from commands.errors import BlobStoreUnavailableError
from commands.ports import BlobStore
from infra.blobs import PostgresBlobStore, blob_store_for
from infra.event_store import PostgresEventStore
from infra.s3_blobs import S3BlobStore
from infra.settings import Settings
from tests.integration.s3_support import CREDENTIALS, free_port, moto_server
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server on a free port, for this module."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="module")
def event_store(endpoints: StackEndpoints) -> Iterator[PostgresEventStore]:
    assert endpoints.database_url is not None
    opened = PostgresEventStore(endpoints.database_url, pool_size=2)
    yield opened
    opened.close()


@pytest.fixture(params=["postgres", "s3"])
def blobs(request: pytest.FixtureRequest, event_store: PostgresEventStore) -> BlobStore:
    if request.param == "postgres":
        postgres = PostgresBlobStore(event_store)
        postgres.setup()
        postgres.setup()  # idempotent
        return postgres
    endpoint: str = request.getfixturevalue("s3_endpoint")
    s3 = S3BlobStore(f"posters-{uuid4().hex[:12]}", endpoint, **CREDENTIALS)
    s3.setup()
    s3.setup()  # the bucket exists now: idempotent
    return s3


def a_key() -> str:
    return f"posters/{uuid4()}/{uuid4().hex}"


def test_what_is_put_is_got_back_with_its_content_type(blobs: BlobStore):
    key = a_key()
    data = bytes(range(256)) * 3  # every byte value: binary-safe
    blobs.put(key, data, "image/webp")
    assert blobs.get(key) == (data, "image/webp")


def test_an_unknown_key_is_none(blobs: BlobStore):
    assert blobs.get(a_key()) is None


def test_a_put_under_the_same_key_replaces_the_blob(blobs: BlobStore):
    key = a_key()
    blobs.put(key, b"first", "image/png")
    blobs.put(key, b"second", "image/webp")
    assert blobs.get(key) == (b"second", "image/webp")


def test_keys_are_independent(blobs: BlobStore):
    show = uuid4()
    full, thumb = f"posters/{show}/full", f"posters/{show}/thumb"
    blobs.put(full, b"full", "image/webp")
    blobs.put(thumb, b"thumb", "image/webp")
    blobs.delete(full)
    assert blobs.get(full) is None
    assert blobs.get(thumb) == (b"thumb", "image/webp")


def test_a_deleted_blob_is_gone_and_deleting_nothing_is_no_error(blobs: BlobStore):
    key = a_key()
    blobs.put(key, b"x", "image/jpeg")
    blobs.delete(key)
    assert blobs.get(key) is None
    blobs.delete(key)
    blobs.delete(a_key())


def test_a_poster_sized_blob_round_trips(blobs: BlobStore):
    key = a_key()
    data = os.urandom(5 * 1024 * 1024)
    blobs.put(key, data, "image/webp")
    found = blobs.get(key)
    assert found is not None and found[0] == data


def test_an_unreachable_s3_endpoint_is_unavailable_not_a_crash():
    s3 = S3BlobStore("posters", f"http://127.0.0.1:{free_port()}", **CREDENTIALS)
    with pytest.raises(BlobStoreUnavailableError):
        s3.put(a_key(), b"x", "image/png")
    with pytest.raises(BlobStoreUnavailableError):
        s3.get(a_key())
    with pytest.raises(BlobStoreUnavailableError):
        s3.setup()


def test_the_settings_choose_the_adapter(
    s3_endpoint: str, event_store: PostgresEventStore, tmp_path: Path
):
    bucket = f"posters-{uuid4().hex[:12]}"
    s3 = blob_store_for(
        Settings(
            data_dir=tmp_path,
            blob_store="s3",
            s3_endpoint_url=s3_endpoint,
            s3_bucket=bucket,
            s3_access_key_id="testing",
            s3_secret_access_key=SecretStr("testing"),
        ),
        event_store,
    )
    assert isinstance(s3, S3BlobStore) and s3.bucket == bucket  # and its bucket was created:
    key = a_key()
    s3.put(key, b"x", "image/png")
    assert s3.get(key) == (b"x", "image/png")
    assert isinstance(blob_store_for(Settings(data_dir=tmp_path), event_store), PostgresBlobStore)


def test_a_bucket_missing_at_start_is_created_by_the_first_put(s3_endpoint: str):
    """The object store was down when the app started: the first upload sets it up."""
    s3 = S3BlobStore(f"late-{uuid4().hex[:12]}", s3_endpoint, **CREDENTIALS)
    key = a_key()
    assert s3.get(key) is None  # no bucket: nothing stored
    s3.put(key, b"x", "image/png")
    assert s3.get(key) == (b"x", "image/png")
