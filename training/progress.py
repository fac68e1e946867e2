"""Job progress as a small JSON file in the job directory: the training job writes it, the training
service reads it (Get/List/Watch). Writes are atomic (write + rename), so a reader never sees half
a file; a file is shared-nothing across processes and survives restarts of either side."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.json"


def now_ms() -> int:
    return int(time.time() * 1000)


class ProgressFile:
    """Merge-on-write JSON: step, total_steps, loss, eta_s, state, published, error, message, …"""

    def __init__(self, job_dir: str | Path) -> None:
        self.path = Path(job_dir) / PROGRESS_FILE

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def update(self, **fields: Any) -> dict[str, Any]:
        current = self.read()
        current.update(fields, updated_ms=now_ms())
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(current))
        partial.replace(self.path)
        return current


@dataclass
class StepClock:
    """Seconds per step and the ETA, measured over the steps this process ran (a resumed run
    does not count the time before its restart)."""

    total_steps: int
    first_step: int = 0
    started: float = field(default_factory=time.perf_counter)

    def seconds_per_step(self, step: int) -> float:
        done = step - self.first_step
        return (time.perf_counter() - self.started) / done if done > 0 else 0.0

    def eta_s(self, step: int) -> float:
        return self.seconds_per_step(step) * max(self.total_steps - step, 0)


def begin_attempt(progress: ProgressFile, *, step: int, **fields: Any) -> dict[str, Any]:
    """Record that the workers (re)started at `step`: the attempt number goes up by one, so that a
    reader can tell a resumed run (whose step went back to its checkpoint) from a stalled one."""
    attempt = int(progress.read().get("attempt", 0)) + 1
    return progress.update(attempt=attempt, step=step, resumed_from_step=step, **fields)


def mark(progress: ProgressFile, state: str, **fields: Any) -> dict[str, Any]:
    """Record a job state transition (with its time) in the progress file."""
    stamp = {"RUNNING": "started_ms", "SUCCEEDED": "finished_ms", "FAILED": "finished_ms"}.get(state)
    return progress.update(state=state, **({stamp: now_ms()} if stamp else {}), **fields)
