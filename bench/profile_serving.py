"""Where a serving process spends its time: py-spy samples the Generator replica and Serve's proxy
while the caller's load runs, and each sampled stack is put in one bucket (the most specific one
any of its frames names). Idle threads are not sampled."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROCESSES = {"replica": "ServeReplica:cdserve:Generator", "proxy": "ProxyActor"}
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("png encoding", ("to_png", "PngImagePlugin", "zlib")),
    ("vae decode", ("_decode (serving/engine",)),
    ("text encoding and K/V", ("_encode (serving/engine", "build_conditioning")),
    ("unet denoising", ("_denoise (serving/engine",)),
    ("concept fetch from registry", ("fetch (shared/registry_client", "registry_client.py")),
    ("concept decode and validation", ("from_bytes", "_decode (serving/concepts", "_from_disk")),
    ("merge", ("merge (serving/concepts", "closed_form_merge")),
    ("prepare (validation, resolution)", ("prepare (serving/replica",)),
    ("batch queue", ("serving/batcher",)),
    ("grpc and serve plumbing", ("grpc", "ray/serve", "ray/_private", "asyncio")),
)


def _pid(marker: str) -> int | None:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


def _bucket(stack: str) -> str:
    for name, needles in BUCKETS:
        if any(needle in stack for needle in needles):
            return name
    return "other"


def summarize(raw: Path) -> dict[str, float]:
    """Share of samples per bucket, from py-spy's raw (collapsed-stack) output."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[_bucket(stack)] += int(count)
    total = sum(counts.values()) or 1
    return {name: round(n / total, 3) for name, n in counts.most_common()}


def profile_replica(seconds: float, load: Callable[[], Any], folder: Path) -> dict[str, Any]:
    """Run `load` in the background, sample both processes for `seconds`; shares per bucket."""
    py_spy = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    result: dict[str, Any] = {"seconds": seconds}
    runs = {}
    for name, marker in PROCESSES.items():
        pid = _pid(marker)
        if pid is None:
            result[name] = "process not found"
            continue
        out = folder / f"{name}.txt"
        command = [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "50",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ]
        runs[name] = (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), out)
    for name, (process, out) in runs.items():
        _, errors = process.communicate(timeout=seconds + 60)
        result[name] = summarize(out) if out.exists() else f"py-spy failed: {errors.strip()[-200:]}"
    worker.join()
    return result
