"""SQLite as cdserve's embedded stores use it (the registry's metadata, the training service's jobs).

A connection autocommits (each store opens its own transactions), waits for a busy writer instead
of failing at once, runs in WAL mode so that reads proceed beside a write, syncs fully so that a
committed row survives a crash, and enforces foreign keys. A schema only moves forward: numbered
migration steps, applied once each and recorded in `schema_migrations`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Apply the steps of `migrations` the database has not had yet, each in its own transaction;
    step i brings it to schema version i + 1. Returns the version it is at. The caller serialises
    writers (one connection, one lock)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)"
    )
    current = schema_version(conn)
    for version, script in enumerate(migrations[current:], start=current + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, int(time.time() * 1000)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(current, len(migrations))


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
