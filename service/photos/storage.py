"""Where photo bytes live. One interface; the local folder is the default backend."""

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 64 * 1024


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str


class PhotoStorage(Protocol):
    def save(self, key: str, source: BinaryIO, *, max_bytes: int) -> StoredObject: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def local_path(self, key: str) -> Path: ...
    def iter_bytes(self, key: str) -> Iterator[bytes]: ...


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

    def save(self, key: str, source: BinaryIO, *, max_bytes: int) -> StoredObject:
        """Copy a stream chunk by chunk, hashing as it goes; over max_bytes nothing is kept."""
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(key)
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size_bytes=size, sha256=digest.hexdigest())

    def save_file(self, key: str, source_path: Path) -> None:
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        os.close(fd)
        shutil.copyfile(source_path, tmp_name)
        os.replace(tmp_name, path)

    def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with open(self.local_path(key), "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
