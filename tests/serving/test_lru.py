"""ByteLRU and the disk tier as specifications: the slot table after every operation."""

from __future__ import annotations

from pathlib import Path

from serving.concepts.disk import DiskTier
from serving.concepts.lru import ByteLRU


def test_put_evicts_least_recently_used_until_the_bytes_fit() -> None:
    lru: ByteLRU[str, str] = ByteLRU(max_bytes=10)
    assert lru.put("a", "A", 4) == []
    assert lru.put("b", "B", 4) == []
    assert lru.get("a") == "A"  # a is now the most recent
    assert lru.put("c", "C", 4) == [("b", "B")]
    assert lru.keys() == ["a", "c"] and lru.resident_bytes == 8


def test_pinned_entries_stay_and_leave_once_unpinned() -> None:
    lru: ByteLRU[str, str] = ByteLRU(max_bytes=10)
    lru.put("a", "A", 6)
    lru.pin("a")
    assert lru.put("b", "B", 6) == [("b", "B")]  # only b is evictable, and it alone is too big
    lru.put("c", "C", 2)
    assert lru.keys() == ["a", "c"] and lru.resident_bytes == 8
    lru.pin("c")
    lru.put("d", "D", 4)  # over budget: a and c are pinned, d goes
    assert lru.keys() == ["a", "c"]
    assert lru.unpin("a") == []  # 8 bytes fit
    assert lru.put("e", "E", 4) == [("a", "A")]
    assert lru.keys() == ["c", "e"] and lru.pins("c") == 1


def test_replacing_an_entry_keeps_its_pins_and_fixes_the_bytes() -> None:
    lru: ByteLRU[str, str] = ByteLRU(max_bytes=10)
    lru.put("a", "A", 3)
    lru.pin("a")
    lru.put("a", "A2", 5)
    assert lru.get("a") == "A2" and lru.pins("a") == 1 and lru.resident_bytes == 5
    assert lru.pop("a") == "A2" and lru.resident_bytes == 0 and lru.unpin("a") == []


def test_disk_tier_evicts_files_and_rebuilds_its_index(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path, max_bytes=10)
    assert disk.write(("a", 1), b"x" * 6) == []
    assert disk.write(("b", 2), b"y" * 6) == [("a", 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b@2.safetensors"]
    assert disk.read(("a", 1)) is None and disk.read(("b", 2)) == b"y" * 6
    reopened = DiskTier(tmp_path, max_bytes=10)
    assert ("b", 2) in reopened and reopened.resident_bytes == 6
    assert reopened.remove(("b", 2)) and not list(tmp_path.iterdir())
