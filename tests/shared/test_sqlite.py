"""The embedded stores' schema only moves forward: each step once, in order, and a failing step
leaves the database at the version before it."""

from __future__ import annotations

import sqlite3

import pytest

from shared.sqlite import connect, migrate, schema_version
from training.service.store import JobStore

STEPS = ("CREATE TABLE a (x INTEGER)", "ALTER TABLE a ADD COLUMN y TEXT; CREATE TABLE b (z INTEGER)")


def test_steps_apply_once_in_order_and_resume_where_the_database_stands(tmp_path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = connect(path)
    assert migrate(conn, STEPS[:1]) == 1
    conn.execute("INSERT INTO a VALUES (1)")
    assert migrate(connect(path), STEPS) == 2
    assert migrate(connect(path), STEPS) == 2
    assert [tuple(r) for r in connect(path).execute("SELECT x, y FROM a")] == [(1, None)]
    assert [r[0] for r in connect(path).execute("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2]


def test_a_failing_step_is_rolled_back_whole(tmp_path) -> None:
    conn = connect(tmp_path / "db.sqlite3")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, (*STEPS, "CREATE TABLE c (w INTEGER); SELECT no_such_column FROM a"))
    assert schema_version(conn) == 2
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'c'").fetchone() is None


def test_a_jobs_database_from_before_the_migrations_table_keeps_its_jobs(tmp_path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER "
        "NOT NULL, job_dir TEXT NOT NULL, spec BLOB NOT NULL, ray_job_id TEXT NOT NULL DEFAULT '', message TEXT NOT "
        "NULL DEFAULT ''); INSERT INTO jobs VALUES ('j1', 'acme', 'RUNNING', 1, '/tmp/j1', x'00', 'r1', '');"
    )
    old.close()
    store = JobStore(path)
    assert store.get("j1").state == "RUNNING"
    assert schema_version(connect(path)) == 1
