"""Where photo bytes live: one interface, a local folder (the default) or an S3-compatible object store.

Nothing outside this package assumes a local path: processing asks for `open_local_copy(key)` (the
file itself locally, a temporary download from S3), serving asks for `iter_bytes(key)` or a
short-lived `presigned_url(key)`. Every method blocks (disk or network): call them from async code
through `anyio.to_thread.run_sync` / `asyncio.to_thread`.
"""

import errno
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from uuid import UUID

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


def photo_key(kind: str, photo_id: UUID, extension: str, month: datetime) -> str:
    """Where a photo's copy goes: `kind/YYYY/MM/ab/<id><extension>`, 256 folders a month. Files created
    at once in one folder wait for its lock, and a city's photos are too many for one folder
    (bench/RESULTS.md: a fifth of the photo upload's CPU). The key is stored with the photo, so copies
    kept under an earlier layout are still found."""
    return f"{kind}/{month:%Y/%m}/{photo_id.hex[:2]}/{photo_id}{extension}"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex (blocks: call it in a thread)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def stored_sha256(storage: "PhotoStorage", key: str) -> str:
    """The SHA-256 of a stored object's bytes (blocks: call it in a thread)."""
    with storage.open_local_copy(key) as path:
        return file_sha256(path)


class PhotoStorage(Protocol):
    def begin_save(self, key: str, *, max_bytes: int, content_type: str | None = None) -> "PartialSave":
        """An upload to be written chunk by chunk as it arrives; complete at `key` once finished. Nothing
        may read `key` before then (an upload's original is referred to only once its report commits)."""

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


class PartialSave:
    """An object being written chunk by chunk (an upload as it arrives), capped as it goes.

    Not hashed: the request that uploads it need not pay for that (the photo worker records the
    original's SHA-256 when it reads it to re-encode it).

    `create` makes the file the bytes go to and answers its descriptor and path (called on the first
    write); `publish` makes that file the object at `key` once every byte is in. Over `max_bytes`,
    `write` raises TooLarge. `discard` removes what was written. The methods block (disk): call them
    in a thread, one at a time.
    """

    def __init__(
        self,
        key: str,
        *,
        max_bytes: int,
        create: Callable[[], tuple[int, Path]],
        publish: Callable[[Path], None] = lambda path: None,
    ):
        self.key = key
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._create, self._publish = create, publish
        self._file: io.FileIO | None = None
        self._path: Path | None = None

    def write(self, chunks: Iterable[bytes | memoryview]) -> None:
        with _writing(self.key):
            if self._file is None:
                fd, self._path = self._create()
                self._file = io.FileIO(fd, "r+")  # unbuffered: the chunks are large already
            for chunk in chunks:
                self.size_bytes += len(chunk)
                if self.size_bytes > self.max_bytes:
                    raise TooLarge(self.key)
                view = memoryview(chunk)
                while view:
                    view = view[self._file.write(view) or 0 :]

    def written(self) -> BinaryIO:
        """What was written so far, readable from its start (to check a photo's header); close it after."""
        self.write(())
        assert self._file is not None
        self._file.seek(0)
        return io.BufferedReader(io.FileIO(self._file.fileno(), "r", closefd=False))

    def finish(self) -> StoredObject:
        self.write(())  # an empty object is still an object
        assert self._file is not None and self._path is not None
        try:
            with _writing(self.key):
                self._file.close()
                self._publish(self._path)
        except BaseException:
            self.discard()
            raise
        return StoredObject(key=self.key, size_bytes=self.size_bytes)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


class LocalStorage:
    """Files under one folder; copies go to a temporary name first so readers never see half a photo."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._resolved_root = self.root.resolve()

    def local_path(self, key: str) -> Path:
        # Lexically (no filesystem calls): keys are ours, the check is against a `..` in one.
        path = Path(os.path.normpath(self._resolved_root / key))
        if not path.is_relative_to(self._resolved_root):
            raise ValueError("storage key escapes the media folder")
        return path

    def begin_save(self, key: str, *, max_bytes: int, content_type: str | None = None) -> PartialSave:
        """Written at the key's own path (a new file, never over another): an upload's original is not
        read by anyone before its report commits, so it needs no temporary name; a failed or refused
        upload is deleted by its request."""

        def create() -> tuple[int, Path]:
            path = self.local_path(key)
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            try:
                return os.open(path, flags, 0o600), path
            except FileNotFoundError:  # the month's folder, the first time
                path.parent.mkdir(parents=True, exist_ok=True)
                return os.open(path, flags, 0o600), path

        return PartialSave(key, max_bytes=max_bytes, create=create)

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
