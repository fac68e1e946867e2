"""The embedded `MetadataStore`: SQLite in WAL mode with a migrations table and one writer.

All writes go through one connection under one lock (SQLite allows one writer anyway; the lock
makes "read the max version, insert N+1" a single serialised step). Reads use their own
connection, which WAL lets run beside a write.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from serving.registry.storage import (
    DELETED,
    PUBLISHED,
    ConceptEventRecord,
    ConceptQuery,
    ConceptRecord,
    NewConcept,
)
from shared.errors import PermissionDenied
from shared.sqlite import connect, migrate, schema_version

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE concepts (
        concept_id       TEXT    NOT NULL,
        version          INTEGER NOT NULL,
        tenant           TEXT    NOT NULL,
        public           INTEGER NOT NULL,
        sha256           TEXT    NOT NULL,
        size_bytes       INTEGER NOT NULL,
        base_fingerprint TEXT    NOT NULL,
        modifier_tokens  TEXT    NOT NULL,
        category_words   TEXT    NOT NULL,
        delta_kind       TEXT    NOT NULL,
        max_rank         INTEGER NOT NULL,
        num_layers       INTEGER NOT NULL,
        created_ms       INTEGER NOT NULL,
        deleted_ms       INTEGER,
        header_json      TEXT    NOT NULL,
        labels           TEXT    NOT NULL,
        PRIMARY KEY (concept_id, version)
    );
    CREATE INDEX concepts_sha256 ON concepts (sha256);
    CREATE TABLE events (
        sequence   INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT    NOT NULL,
        concept_id TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        time_ms    INTEGER NOT NULL,
        FOREIGN KEY (concept_id, version) REFERENCES concepts (concept_id, version)
    );
    """,
)
"""Schema steps in order; step i brings the database to schema version i + 1. Only append."""

_COLUMNS = (
    "concept_id, version, tenant, public, sha256, size_bytes, base_fingerprint, modifier_tokens, "
    "category_words, delta_kind, max_rank, num_layers, created_ms, deleted_ms, header_json, labels"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _record(row: sqlite3.Row) -> ConceptRecord:
    return ConceptRecord(
        concept_id=row["concept_id"],
        version=row["version"],
        tenant=row["tenant"],
        public=bool(row["public"]),
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        base_fingerprint=row["base_fingerprint"],
        modifier_tokens=tuple(json.loads(row["modifier_tokens"])),
        category_words=tuple(json.loads(row["category_words"])),
        delta_kind=row["delta_kind"],
        max_rank=row["max_rank"],
        num_layers=row["num_layers"],
        created_ms=row["created_ms"],
        deleted=row["deleted_ms"] is not None,
        header_json=row["header_json"],
        labels=json.loads(row["labels"]),
    )


def _visible(query: ConceptQuery, alias: str) -> tuple[str, list[Any]]:
    """SQL condition: the rows of `alias` that the query's viewer may see."""
    if query.sees_all:
        return "1", []
    if query.viewer is None:
        return f"{alias}.public = 1", []
    return f"({alias}.public = 1 OR {alias}.tenant = ?)", [query.viewer]


class SqliteMetadataStore:
    """`MetadataStore` in one SQLite file (`registry.sqlite3` in the data folder)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer = connect(self.path)
        self._write_lock = threading.Lock()
        self._migrate()
        self._reader = connect(self.path)
        self._read_lock = threading.Lock()

    def _migrate(self) -> None:
        with self._write_lock:
            migrate(self._writer, MIGRATIONS)

    def _read(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def schema_version(self) -> int:
        with self._read_lock:
            return schema_version(self._reader)

    def owner_of(self, concept_id: str) -> str | None:
        rows = self._read("SELECT tenant FROM concepts WHERE concept_id = ? LIMIT 1", (concept_id,))
        return rows[0]["tenant"] if rows else None

    def insert_version(self, concept: NewConcept) -> tuple[ConceptRecord, int]:
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                row = self._writer.execute(
                    "SELECT MIN(tenant), COALESCE(MAX(version), 0) FROM concepts WHERE concept_id = ?",
                    (concept.concept_id,),
                ).fetchone()
                owner, latest = row[0], row[1]
                if owner is not None and owner != concept.tenant:
                    raise PermissionDenied(
                        f"concept id {concept.concept_id!r} is not available to you; publish under another id",
                        field="concept_id",
                    )
                version = latest + 1
                self._writer.execute(
                    f"INSERT INTO concepts ({_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                    (
                        concept.concept_id,
                        version,
                        concept.tenant,
                        int(concept.public),
                        concept.sha256,
                        concept.size_bytes,
                        concept.base_fingerprint,
                        json.dumps(list(concept.modifier_tokens)),
                        json.dumps(list(concept.category_words)),
                        concept.delta_kind,
                        concept.max_rank,
                        concept.num_layers,
                        concept.created_ms,
                        None,
                        concept.header_json,
                        json.dumps(concept.labels, sort_keys=True),
                    ),
                )
                sequence = self._append_event(PUBLISHED, concept.concept_id, version, concept.created_ms)
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
        return ConceptRecord(**vars(concept), version=version), sequence

    def _append_event(self, kind: str, concept_id: str, version: int, time_ms: int) -> int:
        cursor = self._writer.execute(
            "INSERT INTO events (kind, concept_id, version, time_ms) VALUES (?, ?, ?, ?)",
            (kind, concept_id, version, time_ms),
        )
        assert cursor.lastrowid is not None  # set by every INSERT that succeeded
        return cursor.lastrowid

    def find(self, concept_id: str, version: int | None, query: ConceptQuery) -> ConceptRecord | None:
        visible, params = _visible(query, "c")
        sql = f"SELECT {_COLUMNS} FROM concepts c WHERE c.concept_id = ? AND c.deleted_ms IS NULL AND {visible}"
        if version is not None:
            sql += " AND c.version = ?"
            params = [*params, version]
        rows = self._read(sql + " ORDER BY c.version DESC LIMIT 1", [concept_id, *params])
        return _record(rows[0]) if rows else None

    def list(self, query: ConceptQuery) -> list[ConceptRecord]:
        visible, params = _visible(query, "c")
        where = [visible]
        filters = query.filters
        if not filters.include_deleted:
            where.append("c.deleted_ms IS NULL")
        if not filters.all_versions:
            inner_visible, inner_params = _visible(query, "c2")
            live = "" if filters.include_deleted else " AND c2.deleted_ms IS NULL"
            where.append(
                f"c.version = (SELECT MAX(c2.version) FROM concepts c2 "
                f"WHERE c2.concept_id = c.concept_id AND {inner_visible}{live})"
            )
            params += inner_params
        for column, value in (("tenant", filters.tenant), ("base_fingerprint", filters.base_fingerprint)):
            if value:
                where.append(f"c.{column} = ?")
                params.append(value)
        if filters.category:
            where.append("EXISTS (SELECT 1 FROM json_each(c.category_words) WHERE value = ?)")
            params.append(filters.category)
        if filters.id_prefix:
            where.append("substr(c.concept_id, 1, ?) = ?")
            params += [len(filters.id_prefix), filters.id_prefix]
        if query.after is not None:
            where.append("(c.concept_id > ? OR (c.concept_id = ? AND c.version < ?))")
            params += [query.after[0], query.after[0], query.after[1]]
        sql = (
            f"SELECT {_COLUMNS} FROM concepts c WHERE {' AND '.join(where)} "
            "ORDER BY c.concept_id, c.version DESC LIMIT ?"
        )
        return [_record(row) for row in self._read(sql, [*params, query.limit])]

    def mark_deleted(self, concept_id: str, version: int | None) -> builtins.list[tuple[ConceptRecord, int]]:
        now = _now_ms()
        sql = f"SELECT {_COLUMNS} FROM concepts WHERE concept_id = ? AND deleted_ms IS NULL"
        params: list[Any] = [concept_id]
        if version is not None:
            sql += " AND version = ?"
            params.append(version)
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                rows = self._writer.execute(sql + " ORDER BY version", params).fetchall()
                deleted = []
                for row in rows:
                    self._writer.execute(
                        "UPDATE concepts SET deleted_ms = ? WHERE concept_id = ? AND version = ?",
                        (now, concept_id, row["version"]),
                    )
                    sequence = self._append_event(DELETED, concept_id, row["version"], now)
                    deleted.append((_record(row), sequence))
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
        return [(replace(record, deleted=True), seq) for record, seq in deleted]

    def events_after(self, sequence: int, limit: int) -> builtins.list[ConceptEventRecord]:
        columns = ", ".join(f"c.{name.strip()}" for name in _COLUMNS.split(","))
        rows = self._read(
            f"SELECT e.sequence, e.kind, e.time_ms, {columns} FROM events e "
            "JOIN concepts c ON c.concept_id = e.concept_id AND c.version = e.version "
            "WHERE e.sequence > ? ORDER BY e.sequence LIMIT ?",
            (sequence, limit),
        )
        return [
            ConceptEventRecord(sequence=row["sequence"], kind=row["kind"], concept=_record(row), time_ms=row["time_ms"])
            for row in rows
        ]

    def latest_sequence(self) -> int:
        return self._read("SELECT COALESCE(MAX(sequence), 0) FROM events")[0][0]

    def is_referenced(self, sha256: str) -> bool:
        return bool(self._read("SELECT 1 FROM concepts WHERE sha256 = ? AND deleted_ms IS NULL LIMIT 1", (sha256,)))

    def live_digests(self) -> set[str]:
        return {row[0] for row in self._read("SELECT DISTINCT sha256 FROM concepts WHERE deleted_ms IS NULL")}

    def totals(self) -> tuple[int, int]:
        row = self._read(
            "SELECT (SELECT COUNT(DISTINCT concept_id) FROM concepts WHERE deleted_ms IS NULL), "
            "(SELECT COALESCE(SUM(size_bytes), 0) FROM "
            "(SELECT DISTINCT sha256, size_bytes FROM concepts WHERE deleted_ms IS NULL))"
        )[0]
        return int(row[0]), int(row[1])

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()
