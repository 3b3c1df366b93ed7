"""Where photo bytes live: one interface, a local folder (the default) or an S3-compatible object store.

Nothing outside this package assumes a local path: processing asks for `open_local_copy(key)` (the
file itself locally, a temporary download from S3), serving asks for `iter_bytes(key)` or a
short-lived `presigned_url(key)`. Every method blocks (disk or network): call them from async code
through `anyio.to_thread.run_sync` / `asyncio.to_thread`.
"""

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from service.settings import Settings

CHUNK = 64 * 1024


class TooLarge(Exception):
    pass


class StorageUnavailable(ConnectionError):
    """The object store did not answer (or answered 5xx), or the media folder cannot be written (read-only,
    full): retry later; counts as an outage (503 with Retry-After)."""


# A folder that cannot take a file now, whatever is written: the operator's problem, not the client's.
UNWRITABLE_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EIO})


@contextmanager
def _writing(key: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in UNWRITABLE_ERRNOS:
            raise StorageUnavailable(f"the media folder cannot store {key}: {exc.strerror}") from exc
        raise


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str


class PhotoStorage(Protocol):
    def save(self, key: str, source: BinaryIO, *, max_bytes: int, content_type: str | None = None) -> StoredObject:
        """Stream `source` to `key`, hashing as it goes; over `max_bytes` raise TooLarge and keep nothing."""

    def save_file(self, key: str, source_path: Path, *, content_type: str | None = None) -> None: ...

    def open_local_copy(self, key: str) -> AbstractContextManager[Path]:
        """A readable local file with the object's bytes, for as long as the context lasts."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""

    def exists(self, key: str) -> bool: ...

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks; the object is opened before this returns (FileNotFoundError if absent)."""

    def presigned_url(self, key: str) -> str | None:
        """A short-lived URL a browser can GET directly, or None when the backend cannot make one."""


def spool_capped(source: BinaryIO, out: BinaryIO, *, key: str, max_bytes: int) -> StoredObject:
    """Copy chunk by chunk with a running sha256; raise TooLarge as soon as `max_bytes` is passed."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(key)
        digest.update(chunk)
        out.write(chunk)
    return StoredObject(key=key, size_bytes=size, sha256=digest.hexdigest())


class LocalStorage:
    """Files under one folder; writes go to a temporary name first so readers never see half a photo."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def local_path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("storage key escapes the media folder")
        return path

    def save(self, key: str, source: BinaryIO, *, max_bytes: int, content_type: str | None = None) -> StoredObject:
        path = self.local_path(key)
        with _writing(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as out:
                    stored = spool_capped(source, out, key=key, max_bytes=max_bytes)
                os.replace(tmp_name, path)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        return stored

    def save_file(self, key: str, source_path: Path, *, content_type: str | None = None) -> None:
        path = self.local_path(key)
        with _writing(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            os.close(fd)
            try:
                shutil.copyfile(source_path, tmp_name)
                os.replace(tmp_name, path)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise

    @contextmanager
    def open_local_copy(self, key: str) -> Iterator[Path]:
        yield self.local_path(key)  # already local: no copy

    def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        handle = open(self.local_path(key), "rb")  # noqa: SIM115 - closed by chunks(); opened now: a missing file fails before the response starts

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        return chunks()

    def presigned_url(self, key: str) -> str | None:
        return None


def build_storage(settings: "Settings") -> PhotoStorage:
    """The one place the backend is chosen (STORAGE_BACKEND): used by the API and by every worker."""
    if settings.storage_backend == "s3":
        from service.photos.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.media_dir)
