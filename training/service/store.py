"""Job records in SQLite (WAL): who submitted what, where its directory is, the Ray job id and the
last known state. Progress (step, loss, ETA) is not stored here: the job writes it to its own
progress file, which the service reads."""

from __future__ import annotations

import builtins
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shared.errors import NotFound
from shared.sqlite import connect, migrate

MIGRATIONS: tuple[str, ...] = (
    # IF NOT EXISTS: a jobs database from before the migrations table adopts version 1 as it is
    """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    job_dir     TEXT NOT NULL,
    spec        BLOB NOT NULL,
    ray_job_id  TEXT NOT NULL DEFAULT '',
    message     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, created_ms, job_id);
""",
)
"""Schema steps in order (`shared.sqlite.migrate`); only append."""

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class JobRecord:
    """`spec` is the serialised `TrainingSpec` as submitted; `state` a `JobState` name."""

    job_id: str
    tenant: str
    state: str
    created_ms: int
    job_dir: str
    spec: bytes
    ray_job_id: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class JobStore:
    """Thread-safe; every call is one short transaction."""

    def __init__(self, path: str | Path) -> None:
        self._db = connect(path)
        self._lock = threading.Lock()
        with self._lock:
            migrate(self._db, MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def insert(self, record: JobRecord) -> JobRecord:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.job_id,
                    record.tenant,
                    record.state,
                    record.created_ms,
                    record.job_dir,
                    record.spec,
                    record.ray_job_id,
                    record.message,
                ),
            )
        return record

    def update(self, record: JobRecord, **changes: Any) -> JobRecord:
        updated = replace(record, **changes)
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, ray_job_id = ?, message = ? WHERE job_id = ?",
                (updated.state, updated.ray_job_id, updated.message, updated.job_id),
            )
        return updated

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"training job {job_id!r} does not exist", field="job_id")
        return JobRecord(*row)

    def list(
        self, *, tenant: str | None, state: str | None, after: tuple[int, str] | None, limit: int
    ) -> list[JobRecord]:
        """Oldest first, after the (created_ms, job_id) cursor; tenant None: every tenant's."""
        clauses: builtins.list[str] = []
        values: builtins.list[str | int] = []
        if tenant is not None:
            clauses.append("tenant = ?")
            values.append(tenant)
        if state is not None:
            clauses.append("state = ?")
            values.append(state)
        if after is not None:
            clauses.append("(created_ms, job_id) > (?, ?)")
            values.extend(after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT * FROM jobs {where} ORDER BY created_ms, job_id LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*values, limit)).fetchall()
        return [JobRecord(*row) for row in rows]

    def unfinished(self) -> builtins.list[JobRecord]:
        marks = ", ".join("?" * len(TERMINAL_STATES))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE state NOT IN ({marks})", tuple(TERMINAL_STATES)
            ).fetchall()
        return [JobRecord(*row) for row in rows]

    def count_by_state(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return dict(rows)
