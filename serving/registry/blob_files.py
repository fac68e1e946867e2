"""Content-addressed blob files on local disk: `root/sha256/ab/abcdef…`.

An upload is written to `root/staging/`, fsynced, then renamed into place, so a blob path either
holds the complete content or does not exist; a crash leaves only staging files, removed at start.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from shared.errors import NotFound

STAGING_SUFFIX = ".part"


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedFile:
    """One upload being written to the staging folder, hashed as it arrives."""

    def __init__(self, store: FileBlobStore) -> None:
        self._store = store
        self.path = store.staging_dir / f"{uuid.uuid4().hex}{STAGING_SUFFIX}"
        self._file: BinaryIO | None = open(self.path, "wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._committed = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise RuntimeError("this staged blob is closed; stage a new one")
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def sealed(self) -> BinaryIO:
        self._close(sync=True)
        return open(self.path, "rb")

    def commit(self) -> bool:
        self._close(sync=True)
        target = self._store.path_of(self.sha256)
        self._committed = True
        if target.exists():
            self.path.unlink()
            return True
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        _fsync_dir(target.parent)
        return False

    def discard(self) -> None:
        self._close(sync=False)
        if not self._committed:
            self.path.unlink(missing_ok=True)

    def _close(self, *, sync: bool) -> None:
        if self._file is None:
            return
        if sync:
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()
        self._file = None


class FileBlobStore:
    """The embedded `BlobStore`: one file per distinct artifact content."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "sha256"
        self.staging_dir = self.root / "staging"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        return self.blob_dir / sha256[:2] / sha256

    def stage(self) -> StagedFile:
        return StagedFile(self)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path_of(sha256), "rb")
        except FileNotFoundError as e:
            raise NotFound(f"blob {sha256[:16]}… is missing from {self.blob_dir}", field="sha256") from e

    def delete(self, sha256: str) -> None:
        path = self.path_of(sha256)
        if path.exists():
            path.unlink()
            _fsync_dir(path.parent)

    def digests(self) -> Iterator[str]:
        for path in self.blob_dir.glob("*/*"):
            if path.is_file():
                yield path.name

    def clear_staging(self) -> int:
        leftovers = [p for p in self.staging_dir.iterdir() if p.name.endswith(STAGING_SUFFIX)]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)
