"""The S3-compatible blob store (boto3): AWS S3, MinIO (compose.yaml), moto's server (tests).

Path-style addressing (`endpoint/bucket/key`) works with every S3-compatible server without
DNS names per bucket; checksums are only sent where the API requires them, which older
S3-compatible servers need."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from commands.errors import BlobStoreUnavailableError
from infra.settings import Settings

MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}  # nothing stored there


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.bucket = bucket
        self._region = region
        # boto3 clients are thread-safe: one serves every request of the process.
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
            config=Config(
                connect_timeout=3,
                read_timeout=10,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        secret = settings.s3_secret_access_key
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            region=settings.s3_region,
        )

    def setup(self) -> None:
        """Create the bucket where missing (idempotent; another process may win the race)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if _code(error) not in MISSING:
                raise BlobStoreUnavailableError(str(error)) from error
        except BotoCoreError as error:
            raise BlobStoreUnavailableError(str(error)) from error
        where = {} if self._region == "us-east-1" else {"LocationConstraint": self._region}
        try:
            if where:
                self._client.create_bucket(Bucket=self.bucket, CreateBucketConfiguration=where)
            else:
                self._client.create_bucket(Bucket=self.bucket)
        except ClientError as error:
            if _code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise BlobStoreUnavailableError(str(error)) from error
        except BotoCoreError as error:
            raise BlobStoreUnavailableError(str(error)) from error

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._put(key, data, content_type)
        except ClientError as error:
            if _code(error) != "NoSuchBucket":
                raise BlobStoreUnavailableError(str(error)) from error
            self.setup()  # the store was down at start (or the bucket was removed since)
            try:
                self._put(key, data, content_type)
            except (BotoCoreError, ClientError) as again:
                raise BlobStoreUnavailableError(str(again)) from again
        except BotoCoreError as error:
            raise BlobStoreUnavailableError(str(error)) from error

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = answer["Body"].read()
        except ClientError as error:
            if _code(error) in MISSING:
                return None
            raise BlobStoreUnavailableError(str(error)) from error
        except BotoCoreError as error:
            raise BlobStoreUnavailableError(str(error)) from error
        return data, str(answer.get("ContentType") or "application/octet-stream")

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)  # absent: no error in S3
        except (BotoCoreError, ClientError) as error:
            raise BlobStoreUnavailableError(str(error)) from error


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
