"""The disk tier: artifact files fetched from the registry, bounded by bytes, LRU.

Files are the registry's own bytes (validated again on every load, so a corrupted file is caught);
they survive a replica restart, and the index is rebuilt from the folder, oldest access first.
Temporary files of writes that a crash cut short are deleted then, once old enough not to belong
to a write still in progress in another replica sharing the folder.

Thread-safe on its own (unlike the memory tiers, which the store's lock guards): requests load
different concepts at once, and the store reads and writes files outside its lock. The index has
a lock of its own, held while a file is renamed into place or deleted, not while bytes are read or
written.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from serving.concepts.lru import ByteLRU

ConceptKey = tuple[str, int]
"""(concept id, version)."""
SUFFIX = ".safetensors"
PARTIAL_SUFFIX = ".part"
STALE_PARTIAL_S = 3600.0


def file_name(key: ConceptKey) -> str:
    return f"{key[0]}@{key[1]}{SUFFIX}"


def parse_file_name(name: str) -> ConceptKey | None:
    concept_id, at, version = name.removesuffix(SUFFIX).rpartition("@")
    if not at or not name.endswith(SUFFIX) or not version.isdigit():
        return None
    return concept_id, int(version)


class DiskTier:
    """`read`/`write`/`remove` artifact bytes by concept key; the LRU decides what to delete."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._index: ByteLRU[ConceptKey, Path] = ByteLRU(max_bytes)
        self._lock = threading.Lock()
        self._delete_stale_partials()
        files = sorted(directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_atime)
        for path in files:
            key = parse_file_name(path.name)
            if key is not None:
                self._delete(self._index.put(key, path, path.stat().st_size))

    @property
    def resident_bytes(self) -> int:
        with self._lock:
            return self._index.resident_bytes

    def __contains__(self, key: ConceptKey) -> bool:
        with self._lock:
            return key in self._index

    def read(self, key: ConceptKey) -> bytes | None:
        with self._lock:
            path = self._index.get(key)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:  # evicted or removed meanwhile: a miss, not an error
            with self._lock:
                if self._index.get(key) == path and not path.exists():
                    self._index.pop(key)
            return None

    def write(self, key: ConceptKey, data: bytes) -> list[ConceptKey]:
        """Store atomically (temporary file + rename); returns the keys evicted to make room."""
        path = self.directory / file_name(key)
        with tempfile.NamedTemporaryFile(dir=self.directory, suffix=PARTIAL_SUFFIX, delete=False) as tmp:
            tmp.write(data)
        with self._lock:  # the rename, the index and the files it evicts change together
            os.replace(tmp.name, path)
            evicted = self._index.put(key, path, len(data))
            self._delete(evicted)
        return [k for k, _ in evicted]

    def remove(self, key: ConceptKey) -> bool:
        with self._lock:
            path = self._index.pop(key)
            if path is not None:
                path.unlink(missing_ok=True)
        return path is not None

    def _delete_stale_partials(self) -> None:
        stale = time.time() - STALE_PARTIAL_S
        for partial in self.directory.glob(f"*{PARTIAL_SUFFIX}"):
            try:
                if partial.stat().st_mtime < stale:
                    partial.unlink()
            except FileNotFoundError:  # renamed or removed meanwhile by the replica writing it
                pass

    @staticmethod
    def _delete(evicted: list[tuple[ConceptKey, Path]]) -> None:
        for _, path in evicted:
            path.unlink(missing_ok=True)
