"""Soak: minutes of concept churn against a real `cdserve up`, watching errors, memory and files.

The script starts `cdserve up` (its own Ray, the Serve replica, the registry and the training
service as supervised processes) with cache budgets that hold only a few concepts, then for
`--minutes` keeps publishing new versions, generating with one concept or a merged pair, and
deleting concepts, over more concepts than the caches hold. It counts every outcome against what
was expected: a concept deleted before the request is NOT_FOUND, anything else must succeed. Every
`--sample-s` it reads the resident memory of the Serve replica(s) and of the registry from /proc.
At the end it compares the cache folder with the disk budget and looks for staged uploads left
behind, then writes `bench/results/soak-{device}.json` (every sample) and `.md` (the outcomes and
the memory of each process minute by minute); `--render-only` writes the `.md` again from the JSON.

Growth is judged after a warm-up (the first `--warmup-fraction` of the run): the first caches fill,
the merge's regularisation matrix and the schedulers' graphs are built once, the allocator reaches
its working set. A leak keeps growing after that; warm-up flattens.

    python -m bench.soak [--minutes 10] [--concepts 24] [--render-only]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import RESULTS, results_heading, write_result
from bench.serving import free_port
from serving.client import GeneratorClient
from serving.registry.server import load_base_spec
from shared.artifact import to_bytes
from shared.errors import CdserveError
from shared.registry_client import RegistryClient
from tests.support.synthetic import random_concept

MiB = 2**20
PROMPT = "photo of a {} dog"


@dataclass
class Stack:
    """A `cdserve up` child process and what its banner announced."""

    process: subprocess.Popen[bytes]
    generator: str
    application: str
    registry: str
    token: str
    data: Path


def start_stack(work: Path, cache: dict[str, int], log: Path) -> Stack:
    config = work / "serving.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "grpc_port": free_port(),
                "http_port": free_port(),
                "metrics_export_port": free_port(),
                "cache": cache,
                "limits": {"default_steps": 4, "max_steps": 8},
                "registry": {"address": f"127.0.0.1:{free_port()}", "watch_heartbeat_s": 1},
                "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0},
            }
        )
    )
    data = work / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--config", str(config), "--data", str(data), "--num-cpus", "2"],
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
    )
    banner = ""
    assert process.stdout is not None
    for raw in process.stdout:
        banner += raw.decode()
        if "Ctrl-C" in banner:
            break
    if process.poll() is not None or "cdserve is up" not in banner:
        raise RuntimeError(f"cdserve up did not start; see {log}")
    threading.Thread(target=lambda: process.stdout.read(), daemon=True).start()  # type: ignore[union-attr]
    generator = re.search(r"generator \(gRPC, Serve proxy\): (\S+)\s+application=(\S+)", banner)
    registry = re.search(r"registry\s+\(gRPC\):\s+(\S+)", banner)
    token = re.search(r"operator (\S+) \(kept in", banner)
    assert generator and registry and token, banner
    return Stack(process, generator[1], generator[2], registry[1], token[1], data)


def stop_stack(stack: Stack) -> None:
    stack.process.send_signal(2)  # SIGINT: the stack stops its services and Ray
    try:
        stack.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        stack.process.kill()


def descendants(root: int) -> list[int]:
    """Process ids below `root` (Linux /proc), found through their parents."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def watched_processes(stack: Stack) -> dict[str, int]:
    """The processes whose memory is sampled: Serve replicas (Ray names them in their process
    title) and the registry (a child of `cdserve up`'s supervisor)."""
    found = {}
    for pid in descendants(stack.process.pid):
        line = command_line(pid)
        if line.startswith("ray::ServeReplica"):
            found[f"replica {pid}"] = pid
        elif " registry --config" in line:
            found["registry"] = pid
    return found


@dataclass
class Churn:
    """The concepts' state as this script made it, and every outcome against its expectation."""

    registry: RegistryClient
    spec: Any
    concepts: int
    live: dict[str, int] = field(default_factory=dict)  # id → versions published since its last delete
    deleted_at: dict[str, float] = field(default_factory=dict)
    deletes: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        return [f"soak-{i:03d}" for i in range(self.concepts)]

    def publish(self, concept_id: str) -> None:
        with self.lock:
            self.seed += 1
            seed = self.seed
        self.registry.publish(to_bytes(*random_concept(self.spec, concept_id, seed=seed)), public=True)
        with self.lock:
            self.live[concept_id] = self.live.get(concept_id, 0) + 1
            self.deleted_at.pop(concept_id, None)
        self.outcomes["publish ok"] += 1

    def delete(self, concept_id: str) -> None:
        with self.lock:
            self.live.pop(concept_id, None)
            self.deleted_at[concept_id] = time.monotonic()
            self.deletes[concept_id] += 1
        self.registry.delete(concept_id)
        self.outcomes["delete ok"] += 1

    def state(self, chosen: list[str]) -> tuple[bool, tuple[int, ...]]:
        """Whether all of `chosen` are published, and how often each was deleted so far."""
        with self.lock:
            return all(c in self.live for c in chosen), tuple(self.deletes[c] for c in chosen)

    def record(
        self,
        kind: str,
        before: tuple[bool, tuple[int, ...]],
        after: tuple[bool, tuple[int, ...]],
        error: CdserveError | None,
    ) -> None:
        """Live before and after with no delete between: must succeed. Deleted before and still
        deleted after: NOT_FOUND expected. Changed while in flight: either answer is right."""
        settled = before == after
        expected_ok = settled and before[0]
        if error is None:
            late = not settled or expected_ok
            self.outcomes[f"{kind} ok" if late else f"{kind} ok after delete (cache not yet invalidated)"] += 1
        elif not expected_ok and error.reason == "NOT_FOUND":
            self.outcomes[f"{kind} NOT_FOUND after delete (expected)"] += 1
        else:
            self.outcomes[f"{kind} error {error.reason}"] += 1
            self.errors.append(f"{kind}: {error.reason}: {error.message[:200]}")


def churn_loop(churn: Churn, stop: threading.Event, rng: random.Random) -> None:
    """Publish a new version (60 %) or delete a concept (40 % once most exist), about twice a second."""
    while not stop.is_set():
        concept_id = rng.choice(churn.ids())
        try:
            if concept_id in churn.live and len(churn.live) > churn.concepts // 2 and rng.random() < 0.4:
                churn.delete(concept_id)
            else:
                churn.publish(concept_id)
        except CdserveError as e:
            churn.outcomes[f"churn error {e.reason}"] += 1
            churn.errors.append(f"churn {concept_id}: {e.reason}: {e.message[:200]}")
        stop.wait(0.5)


def generate_loop(churn: Churn, client: GeneratorClient, stop: threading.Event, rng: random.Random) -> None:
    """One concept (70 %) or a merged pair (30 %), drawn from every id, deleted ones included."""
    while not stop.is_set():
        with churn.lock:
            known = [i for i in churn.ids() if i in churn.live or i in churn.deleted_at]
        if len(known) < 2:
            stop.wait(0.5)
            continue
        chosen = rng.sample(known, 2 if rng.random() < 0.3 else 1)
        before = churn.state(chosen)
        prompt = " and ".join(PROMPT.format(f"<{c}>") for c in chosen)
        request = client.request(prompt, concepts=chosen, steps=4, seed=rng.randrange(2**31), width=32, height=32)
        kind = "merge" if len(chosen) == 2 else "generate"
        try:
            client.generate(request, timeout_s=120)
            error = None
        except CdserveError as e:
            error = e
        churn.record(kind, before, churn.state(chosen), error)


def sample_loop(
    stack: Stack, samples: list[dict[str, Any]], stop: threading.Event, every_s: float, start: float
) -> None:
    while not stop.is_set():
        row: dict[str, Any] = {"t_s": round(time.monotonic() - start, 1)}
        for name, pid in watched_processes(stack).items():
            if (rss := rss_mib(pid)) is not None:
                row[name] = round(rss, 1)
        samples.append(row)
        stop.wait(every_s)


def growth(samples: list[dict[str, Any]], name: str, warmup_s: float) -> dict[str, Any] | None:
    """RSS after warm-up: the median of its first and last minute, growth between them, and the
    least-squares slope over the whole post-warm-up window."""
    points = [(row["t_s"], row[name]) for row in samples if name in row and row["t_s"] >= warmup_s]
    if len(points) < 4:
        return None
    end = points[-1][0]
    first = statistics.median(v for t, v in points if t < warmup_s + 60)
    last = statistics.median(v for t, v in points if t > end - 60)
    ts, vs = zip(*points, strict=True)
    mean_t, mean_v = statistics.fmean(ts), statistics.fmean(vs)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / sum((t - mean_t) ** 2 for t in ts)
    start_rss = next(row[name] for row in samples if name in row)
    windows = [
        [v for t, v in ((r["t_s"], r[name]) for r in samples if name in r) if k * 120 <= t < (k + 1) * 120]
        for k in range(int(end // 120) + 1)
    ]
    return {
        "start_mib": start_rss,
        "after_warmup_mib": round(first, 1),
        "end_mib": round(last, 1),
        "peak_mib": max(vs),
        "growth_after_warmup_pct": round(100 * (last - first) / first, 2),
        "slope_mib_per_min": round(slope * 60, 3),
        "median_per_2_min_mib": [round(statistics.median(w), 1) for w in windows if w],
    }


def files_report(data: Path, disk_max_bytes: int) -> dict[str, Any]:
    """What the caches and the registry hold on disk at the end."""
    cache = [p for p in (data / "concepts").rglob("*") if p.is_file()]
    staging = data / "registry" / "staging"
    return {
        "cache_files": len(cache),
        "cache_bytes": sum(p.stat().st_size for p in cache),
        "cache_budget_bytes": disk_max_bytes,
        "cache_partial_files": sorted(p.name for p in cache if not p.name.endswith(".safetensors")),
        "registry_staged_files": sorted(p.name for p in staging.iterdir()) if staging.exists() else [],
        "registry_blobs": sum(1 for _ in (data / "registry" / "sha256").glob("*/*")),
    }


def per_minute(samples: list[dict[str, Any]]) -> list[str]:
    """The median RSS (MiB) of every watched process in each minute of the run, as table rows."""
    names = sorted({k for row in samples for k in row if k != "t_s"})
    rows = [f"| minute | {' | '.join(f'{name} MiB' for name in names)} |", "|---" * (len(names) + 1) + "|"]
    for minute in range(int(max(row["t_s"] for row in samples) // 60) + 1):
        window = [row for row in samples if minute * 60 <= row["t_s"] < (minute + 1) * 60]
        cells = [
            f"{statistics.median(values):.1f}" if (values := [row[n] for row in window if n in row]) else ""
            for n in names
        ]
        rows.append(f"| {minute} | {' | '.join(cells)} |")
    return rows


def table(payload: dict[str, Any]) -> str:
    cache = payload["cache"]
    lines = [
        *results_heading(
            f"Soak: {payload['minutes']} minutes of concept churn against `cdserve up` ({payload['device']})",
            payload["command"],
            f"{payload['concepts']} concepts churned through caches that hold about {payload['concepts_per_cache']} "
            f"(device, host and disk budgets of {cache['device_max_bytes'] // 1024} KiB"
            f"/{cache['host_max_bytes'] // 1024} KiB/{cache['disk_max_bytes'] // 1024} KiB); {payload['machine']}.",
        ),
        "| outcome | count |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(payload["outcomes"].items())],
        "",
        f"Unexpected errors: **{len(payload['errors'])}**.",
        "",
        "| process | start MiB | after warm-up | end | peak | growth after warm-up | MiB/min |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in sorted(payload["memory"].items()):
        if g:
            lines.append(
                f"| {name} | {g['start_mib']} | {g['after_warmup_mib']} | {g['end_mib']} | {g['peak_mib']} | "
                f"{g['growth_after_warmup_pct']} % | {g['slope_mib_per_min']} |"
            )
    files = payload["files"]
    lines += [
        "",
        f"Files at the end: cache {files['cache_files']} files, {files['cache_bytes']} bytes "
        f"(budget {files['cache_budget_bytes']}); partial cache files {files['cache_partial_files'] or 'none'}; "
        f"registry staging {files['registry_staged_files'] or 'empty'}.",
        "",
        f"Resident memory minute by minute (median of the samples; warm-up ends at {payload['warmup_s'] / 60:g} min):",
        "",
        *per_minute(payload["samples"]),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concepts", type=int, default=24, help="distinct concept ids churned")
    parser.add_argument("--cached", type=int, default=4, help="concepts each cache tier holds (sets the budgets)")
    parser.add_argument("--clients", type=int, default=2, help="threads generating at once")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--warmup-fraction", type=float, default=0.2)
    parser.add_argument("--machine", default="shared 2-core CPU machine, loaded by other work")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--render-only", action="store_true", help="write soak-cpu.md again from soak-cpu.json, without a run"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render_only:
        payload = json.loads((RESULTS / "soak-cpu.json").read_text())
        (RESULTS / "soak-cpu.md").write_text(table(payload))
        print(table(payload))
        return payload
    work = Path(tempfile.mkdtemp(prefix="cdserve-soak-"))
    probe_spec = None
    stack = None
    try:
        from serving.basemodels import default_model_dir
        from shared.spec import SPEC_FILE

        model_dir = default_model_dir()
        spec_file = model_dir / SPEC_FILE
        if spec_file.exists():
            probe_spec = load_base_spec(spec_file)
        else:
            from shared.basemodel import load_base_model

            probe_spec = load_base_model(model_dir).spec
        concept_bytes = len(to_bytes(*random_concept(probe_spec, "soak-probe", seed=0)))
        per_tier = concept_bytes * args.cached
        cache = {
            "device_max_bytes": per_tier,
            "host_max_bytes": per_tier,
            "disk_max_bytes": per_tier,
            "merged_max_bytes": per_tier,
        }
        stack = start_stack(work, cache, work / "up.log")
        print(f"stack up: generator {stack.generator}, registry {stack.registry}; {args.minutes} minutes", flush=True)
        spec = load_base_spec(stack.data / "run" / "base_spec.json")
        rng = random.Random(args.seed)
        samples: list[dict[str, Any]] = []
        stop = threading.Event()
        start = time.monotonic()
        with RegistryClient(stack.registry, token=stack.token) as registry:
            churn = Churn(registry, spec, args.concepts)
            for concept_id in churn.ids()[: args.cached * 2]:
                churn.publish(concept_id)
            clients = [
                GeneratorClient(stack.generator, application=stack.application, token=stack.token, timeout_s=120)
                for _ in range(args.clients)
            ]
            sampler = threading.Thread(target=sample_loop, args=(stack, samples, stop, args.sample_s, start))
            churner = threading.Thread(target=churn_loop, args=(churn, stop, random.Random(rng.random())))
            threads = [sampler, churner]
            threads += [
                threading.Thread(target=generate_loop, args=(churn, c, stop, random.Random(rng.random())))
                for c in clients
            ]
            for thread in threads:
                thread.start()
            stop.wait(args.minutes * 60)
            stop.set()
            for thread in threads:
                thread.join(timeout=180)
            for client in clients:
                client.close()
        time.sleep(2 * 1.0)  # the replicas' watch heartbeat: deletes reach the caches
        warmup_s = args.minutes * 60 * args.warmup_fraction
        names = sorted({k for row in samples for k in row if k != "t_s"})
        payload = {
            "command": "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
            "device": "cpu",
            "machine": args.machine,
            "minutes": args.minutes,
            "concepts": args.concepts,
            "concepts_per_cache": args.cached,
            "concept_bytes": concept_bytes,
            "cache": cache,
            "outcomes": dict(churn.outcomes),
            "errors": churn.errors[:50],
            "memory": {name: growth(samples, name, warmup_s) for name in names},
            "warmup_s": warmup_s,
            "files": files_report(stack.data, cache["disk_max_bytes"]),
            "samples": samples,
        }
        write_result("soak-cpu", payload, table=table(payload))
        print(table(payload))
        return payload
    finally:
        if stack is not None:
            stop_stack(stack)


if __name__ == "__main__":
    main()
