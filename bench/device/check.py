"""The whole GPU check in one command, each part a subprocess with its own time limit, all within
one deadline; writes OUT/gpu-<device>.json and .md (with the command, device, torch/CUDA, date):

    python -m bench.device.check --out OUT [--budget-s 500] [--parts engine,tiers,train,serving,compile,sdxl]
    python -m bench.device.check --out OUT --dry-run     # the same plumbing on this CPU, tiny models

Parts, in order: the engine tests on the device (`CDSERVE_TEST_DEVICE`), the concept cache's device
tier and merge on the device, a one-worker Ray Train run (NCCL on a GPU), the serving bench through
the Ray Serve gRPC proxy (a/b/c), compiled against eager UNet, and SDXL (`bench.device.sdxl`). A part
that fails or runs out of time is reported as such; the parts after it still run while time is left.
Each part may use at most its share of the time left when it starts, so the SD 1.5 parts come first
and SDXL, last, takes what they leave; a part learns its deadline from `CDSERVE_PART_DEADLINE`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
"""pytest as the parts run it: no cache written into the tree, without the suite's addopts."""
PART_DEADLINE = "CDSERVE_PART_DEADLINE"
"""The environment variable that tells a part when its time is up (Unix time), so it can fit its own
stages in."""


@dataclass(frozen=True)
class Part:
    name: str
    command: list[str]
    share: float
    """Of the time left when it starts, at most (the last part gets all of it)."""
    env: dict[str, str]


def parts(out: Path, dry_run: bool) -> list[Part]:
    device = "cpu" if dry_run else "cuda"
    py = [sys.executable]
    tests = {"CDSERVE_TEST_DEVICE": device}
    engine_tests = (
        ["tests/engine/test_row_deltas.py"] if dry_run else ["tests/engine", "--ignore=tests/engine/test_compile.py"]
    )
    serving = (
        "--model tiny --device cpu --catalogue 60 --requests 16 --warmup 16 --batch 8 --rounds 1 --device-cache 10"
        if dry_run
        else "--model sd15 --device cuda --batch 16 --rank 16 --full-every 50 --requests 48 --warmup 96 --rounds 2 "
        "--device-cache 64"
    ).split()
    compile_args = (
        "--model tiny --device cpu --dtype fp32 --steps 2 --batches 1,3 --switches 10 --rank 2 --backend eager "
        "--repeats 1"
        if dry_run
        else "--model sd15 --device cuda --dtype fp16 --batches 1,8,16"
    ).split()
    pytest = [*PYTEST, "-x"]
    return [
        Part("engine", [*pytest, f"--junitxml={out}/engine.xml", *engine_tests], 0.2, tests),
        Part(
            "tiers",
            [
                *pytest,
                f"--junitxml={out}/tiers.xml",
                "tests/serving/test_device_tier.py",
                "tests/serving/test_replica_timing.py",
                "tests/serving/test_disk_restart.py",
            ],
            0.15,
            tests,
        ),
        Part(
            "train",
            [*py, "-m", "bench.device.train_nccl", "--out", str(out), *(["--cpu"] if dry_run else [])],
            0.15,
            {},
        ),
        Part("serving", [*py, "-m", "bench.serving", *serving, "--out", str(out)], 0.6, {}),
        Part("compile", [*py, "-m", "bench.device.compile_bench", *compile_args, "--out", str(out)], 0.5, {}),
        Part("sdxl", [*py, "-m", "bench.device.sdxl", "--out", str(out), *(["--dry-run"] if dry_run else [])], 1.0, {}),
    ]


def junit(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    suites = ElementTree.parse(path).getroot()
    suite = suites if suites.tag == "testsuite" else suites[0]
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def run_part(part: Part, out: Path, timeout_s: float, *, own_session: bool = True) -> dict[str, Any]:
    """Run `part` to its end or its time limit. In a session of its own, a part that is cut off ends
    with everything it started (Ray, compile workers, test processes), so nothing it left holds the
    device's memory for the next part; one run from inside a part (`own_session=False`) stays in
    that part's session and ends with it."""
    started = time.perf_counter()
    log = out / f"{part.name}.log"
    rc: int | str
    with log.open("w") as sink:
        process = subprocess.Popen(
            part.command,
            cwd=ROOT,
            env={**os.environ, **part.env, PART_DEADLINE: str(time.time() + timeout_s)},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )
        try:
            rc = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        finally:
            if own_session:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.kill()
            process.wait()
    tail = log.read_text(errors="replace").splitlines()[-15:]
    return {
        "rc": rc,
        "ok": rc == 0,
        "seconds": round(time.perf_counter() - started, 1),
        "limit_s": round(timeout_s),
        "command": " ".join(part.command),
        "log_tail": tail,
    }


def environment() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        or os.environ.get("CDSERVE_COMMIT", "unknown"),
    }


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    rows = [
        f"# GPU check: {env['device']}",
        "",
        f"`{report['command']}` on {env['date']}; torch {env['torch']}, CUDA {env['cuda']}, "
        f"Python {env['python']}, commit {env['commit']}; {report['seconds']:.0f} s of a {report['budget_s']:.0f} s "
        "budget.",
        "",
        "| part | result | seconds |",
        "|---|---|---|",
    ]
    for name, part in report["parts"].items():
        tests = part.get("tests")
        detail = f" ({tests['tests']} tests, {tests['failures']} failed, {tests['errors']} errors)" if tests else ""
        rows.append(f"| {name} | {'ok' if part['ok'] else 'FAILED: ' + str(part['rc'])}{detail} | {part['seconds']} |")
    for name in ("serving", "compile", "train", "sdxl"):
        if name in report.get("results", {}):
            rows += ["", f"## {name}", "", "```json", json.dumps(report["results"][name], indent=1)[:6000], "```"]
    serving_md = report.get("serving_md")
    if serving_md:
        rows += ["", serving_md]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=500.0, help="all parts together")
    parser.add_argument("--parts", default="engine,tiers,train,serving,compile,sdxl")
    parser.add_argument("--dry-run", action="store_true", help="on this CPU with the tiny models")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = set(args.parts.split(","))
    report: dict[str, Any] = {
        "command": "python -m bench.device.check " + " ".join(argv or sys.argv[1:]),
        "budget_s": args.budget_s,
        "environment": environment(),
        "parts": {},
        "results": {},
    }
    for part in (p for p in parts(args.out, args.dry_run) if p.name in chosen):
        left = args.budget_s - (time.perf_counter() - started)
        if left < 10:
            report["parts"][part.name] = {"rc": "no time left", "ok": False, "seconds": 0}
            continue
        result = run_part(part, args.out, left * part.share if part.share < 1 else left)
        result["tests"] = junit(args.out / f"{part.name}.xml") or None
        report["parts"][part.name] = result
        print(f"{part.name}: rc {result['rc']} in {result['seconds']} s", flush=True)
    for name, file in (("train", "train-nccl.json"), ("compile", "compile.json"), ("sdxl", "sdxl.json")):
        if (args.out / file).exists():
            report["results"][name] = json.loads((args.out / file).read_text())
    serving = sorted(args.out.glob("serving-*.json"))
    if serving:
        report["results"]["serving"] = json.loads(serving[0].read_text())
        report["serving_md"] = (
            serving[0].with_suffix(".md").read_text() if serving[0].with_suffix(".md").exists() else ""
        )
    report["seconds"] = time.perf_counter() - started
    name = "gpu-" + report["environment"]["device"].lower().replace("nvidia ", "").split()[0].replace("/", "-")
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    print(f"wrote {args.out / name}.json and .md")
    return report


if __name__ == "__main__":
    main()
