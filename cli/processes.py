"""Finding and ending processes by what they mention, for a `ray stop` limited to one cluster:
every process of a Ray session names its temp dir in its command line or environment (Linux /proc)."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def processes_mentioning(text: str) -> list[int]:
    """Ids of this user's processes whose command line or environment contains `text` (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or another user's
            continue
    return found


def kill_processes_mentioning(text: str, *, grace_s: float = 5.0) -> None:
    pids = processes_mentioning(text)
    if pids:
        logger.info("stopping %d leftover Ray process(es) of this stack", len(pids))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while (pids := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids:
            return


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie is dead; its parent reaps it
