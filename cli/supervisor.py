"""Runs each service of the local stack as its own process and keeps it running.

A child that exits while the stack is up is started again, after a delay that doubles with each
quick failure (so a service that cannot start does not spin), and every exit and restart is logged.
`stop()` sends SIGTERM to every child, waits for them to finish gracefully, then SIGKILLs what is
left: no child outlives the supervisor's orderly stop.

Children run in their own process group, so a Ctrl-C typed in the terminal reaches the supervisor
alone, which then stops the children in order.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("cdserve.supervisor")


@dataclass(frozen=True)
class Backoff:
    """Delay before restart number n (1-based) of a child that keeps failing quickly; a child that
    ran `stable_s` or longer before it exited is restarted after `initial_s` again."""

    initial_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 30.0

    def delay_s(self, failures: int) -> float:
        return min(self.initial_s * 2 ** max(failures - 1, 0), self.max_s)


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: its command line and how to tell it is serving."""

    name: str
    argv: Sequence[str]
    ready: Callable[[], bool] = field(compare=False)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ServiceSpec
    process: subprocess.Popen | None = None
    started: float = 0.0
    failures: int = 0
    restarts: int = 0
    restart_at: float | None = None


class Supervisor:
    """Start with `start()`; `restarts(name)` counts the restarts of a child; `stop()` ends all."""

    def __init__(
        self, services: Sequence[ServiceSpec], *, log_dir: Path, backoff: Backoff = Backoff(), poll_s: float = 0.2
    ) -> None:
        self._children = {spec.name: _Child(spec) for spec in services}
        self._log_dir = log_dir
        self._backoff = backoff
        self._poll_s = poll_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="cdserve-supervisor", daemon=True)

    def start(self, *, ready_timeout_s: float = 120.0) -> None:
        """Start every child, wait until each is ready, then watch them. Should one not become
        ready, all are stopped before the error is raised."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for child in self._children.values():
                self._spawn(child)
        try:
            for name in self._children:
                self.wait_ready(name, timeout_s=ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self._thread.start()

    def pid(self, name: str) -> int:
        process = self._children[name].process
        if process is None:
            raise RuntimeError(f"{name} is not running")
        return process.pid

    def restarts(self, name: str) -> int:
        return self._children[name].restarts

    def wait_ready(self, name: str, *, timeout_s: float) -> None:
        """Block until `name` answers its readiness check; RuntimeError after `timeout_s` or when
        its first start exits (its log names the cause)."""
        child = self._children[name]
        deadline = time.monotonic() + timeout_s
        while not child.spec.ready():
            process = child.process
            if not self._thread.is_alive() and process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}; see {self._log_path(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} was not ready after {timeout_s:.0f} s; see {self._log_path(name)}")
            time.sleep(0.1)

    def stop(self, *, grace_s: float = 10.0) -> None:
        """SIGTERM every child, SIGKILL those still running after `grace_s`, and reap them all."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            processes = [c.process for c in self._children.values() if c.process is not None]
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + grace_s
            for process in processes:
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0))
                except subprocess.TimeoutExpired:
                    log.warning("pid %d did not stop within %.0f s; killing it", process.pid, grace_s)
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def _log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"

    def _spawn(self, child: _Child) -> None:
        with self._log_path(child.spec.name).open("ab") as output:
            child.process = subprocess.Popen(
                list(child.spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **child.spec.env},
                start_new_session=True,
            )
        child.started = time.monotonic()
        child.restart_at = None
        log.info("%s started (pid %d)", child.spec.name, child.process.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(self._poll_s):
            with self._lock:
                if self._stopping.is_set():
                    return
                for child in self._children.values():
                    self._check(child)

    def _check(self, child: _Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
            return
        process = child.process
        if process is None or process.poll() is None:
            return
        ran_s = now - child.started
        child.failures = 1 if ran_s >= self._backoff.stable_s else child.failures + 1
        delay_s = self._backoff.delay_s(child.failures)
        child.restart_at = now + delay_s
        log.warning(
            "%s (pid %d) exited with %s after %.1f s; restarting in %.1f s (restart %d, log %s)",
            child.spec.name,
            process.pid,
            _describe_exit(process.returncode),
            ran_s,
            delay_s,
            child.restarts + 1,
            self._log_path(child.spec.name),
        )


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"code {returncode}"
