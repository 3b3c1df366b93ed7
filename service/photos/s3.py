"""Photos in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, …) through boto3.

The bucket stays private: nothing here sets an ACL or a policy. Browsers get photos either through
the API (streamed) or through a presigned GET that expires after S3_PRESIGN_SECONDS. boto3 is
blocking; the API and the worker call these methods in threads (boto3 clients are thread-safe).
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.photos.storage import CHUNK, PartialSave, StorageUnavailable
from service.settings import Settings

# Objects under public/ and thumbnails/ are the metadata-free copies; their answers may be cached.
PUBLIC_CACHE_CONTROL = "public, max-age=86400, immutable"
_MISSING = {"404", "NoSuchKey", "NotFound"}
# Sequential parts inside the caller's thread: no thread pool per upload.
_TRANSFER = TransferConfig(use_threads=False)


def _translated(error: Exception, key: str) -> Exception:
    """Missing → FileNotFoundError; a store that is down or overloaded → StorageUnavailable (an outage)."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _MISSING or status == 404:
            return FileNotFoundError(key)
        if status >= 500 or code in ("SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError"):
            return StorageUnavailable(f"object store: {code or status}")
        return error
    if isinstance(error, (BotoCoreError, S3UploadFailedError)):
        return StorageUnavailable(f"object store: {type(error).__name__}")
    return error


class S3Storage:
    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        presign_seconds: int = 300,
        addressing_style: str = "path",
        max_connections: int = 20,
    ):
        self.bucket = bucket
        self.presign_seconds = presign_seconds
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=3,
            read_timeout=20,
            max_pool_connections=max_connections,
            # Plain Content-MD5/SigV4 requests that every S3-compatible store accepts.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # None for both: boto3's own chain (environment, instance role, …).
        session = boto3.session.Session(aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)
        self.client = session.client("s3", endpoint_url=endpoint_url or None, config=config)
        # URLs for browsers are signed for the host the browser will use (the signature covers it).
        self.presigner = (
            session.client("s3", endpoint_url=public_endpoint_url, config=config)
            if public_endpoint_url and public_endpoint_url != endpoint_url
            else self.client
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Storage":
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            presign_seconds=settings.s3_presign_seconds,
            addressing_style=settings.s3_addressing_style,
            max_connections=settings.s3_max_connections,
        )

    def _extra(self, key: str, content_type: str | None) -> dict:
        extra: dict = {"ContentType": content_type or "application/octet-stream"}
        if not key.startswith("originals/"):
            extra["CacheControl"] = PUBLIC_CACHE_CONTROL
        return extra

    def begin_save(self, key: str, *, max_bytes: int, content_type: str | None = None) -> PartialSave:
        """Written to a local temporary file (capped, hashed) first: an oversized upload never reaches the bucket."""

        def upload(written: Path) -> None:
            try:
                self.client.upload_file(
                    str(written), self.bucket, key, ExtraArgs=self._extra(key, content_type), Config=_TRANSFER
                )
            except Exception as error:
                raise _translated(error, key) from error
            finally:
                written.unlink(missing_ok=True)

        def create() -> tuple[int, Path]:
            fd, name = tempfile.mkstemp(prefix="upload-")
            return fd, Path(name)

        return PartialSave(key, max_bytes=max_bytes, create=create, publish=upload)

    def save_file(self, key: str, source_path: Path, *, content_type: str | None = None) -> None:
        try:
            self.client.upload_file(
                str(source_path), self.bucket, key, ExtraArgs=self._extra(key, content_type), Config=_TRANSFER
            )
        except Exception as error:
            raise _translated(error, key) from error

    @contextmanager
    def open_local_copy(self, key: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="photo-") as scratch:
            path = Path(scratch) / os.path.basename(key)
            try:
                self.client.download_file(self.bucket, key, str(path), Config=_TRANSFER)
            except Exception as error:
                raise _translated(error, key) from error
            yield path

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            translated = _translated(error, key)
            if not isinstance(translated, FileNotFoundError):
                raise translated from error

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            translated = _translated(error, key)
            if isinstance(translated, FileNotFoundError):
                return False
            raise translated from error
        return True

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as error:
            raise _translated(error, key) from error

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK)
            finally:
                body.close()

        return chunks()

    def presigned_url(self, key: str) -> str | None:
        return self.presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presign_seconds
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (operations and tests: what is in the bucket)."""
        found: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(item["Key"] for item in page.get("Contents", []))
        except Exception as error:
            raise _translated(error, prefix) from error
        return found
