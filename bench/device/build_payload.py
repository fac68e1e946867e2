"""Build the payload that the GPU machine needs and lacks (run here, with network access to PyPI):

    python -m bench.device.build_payload [--out bench/device/payload]

* Ray 2.60 for CPython 3.12, stripped of what serving and training never load (the Java jars,
  RLlib, the dashboard's web client, bundled tests) and packed with `tar | xz`: the wheel as
  published is larger than what one run on the GPU machine can carry.
* cp312 manylinux wheels of the other packages that machine lacks (list below; it has its own
  torch, transformers, numpy, grpcio, protobuf …), laid out as `pip install --target` would and
  packed the same way, since xz packs them to about 60 % of the wheels' size. The list was found by
  starting Ray Serve with them on CPython 3.12 and adding what it asked for.
* With `--train-deps`: pyarrow and pandas as well, trimmed and packed like Ray. `import ray.train`
  requires both; they do not fit beside the rest, so they travel in a second run when the machine
  lacks them (`bench/device/run.sh` reports which modules are missing before anything runs).

The folder is ignored by git: rebuild it in a few minutes whenever the list changes. Its size is
printed and written to MANIFEST.json, beside what travels with it: a run carries the working tree
too (the files git tracks and the untracked ones it does not ignore), within one limit for both.
`bench/device/run.sh` unpacks it on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CARRY_LIMIT_MIB = 64
"""What one run on the GPU machine carries: the working tree and the payload together."""
RAY = "ray==2.60.0"
RAY_DROPPED = (
    "ray/jars",
    "ray/rllib",
    "ray/dashboard/client/build",
    "ray/tests",
    "ray/tune/tests",
    "ray/data/tests",
    "ray/llm",
)
RAY_BINARIES = ("ray/_raylet.so", "ray/core/src/ray/gcs/gcs_server", "ray/core/src/ray/raylet/raylet")
TRAIN_DEPS = {
    "pyarrow==26.0.1": (
        "pyarrow/include",
        "pyarrow/src",
        "pyarrow/tests",
        "pyarrow/libarrow_flight",
        "pyarrow/_flight",
        "pyarrow/libarrow_s3",
        "pyarrow/_s3fs",
        "pyarrow/libgandiva",
        "pyarrow/gandiva",
    ),
    "pandas==3.1.1": ("pandas/tests",),
}
"""Packages ray.train imports on start, and what of them it never loads."""
WHEELS = (
    # the engine and its config
    "diffusers==0.42.1",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "typing-extensions>=4.14",
    # the generated gRPC modules need these versions (the machine's own may be older)
    "grpcio==1.85.4",
    "grpcio-health-checking==1.85.1",
    "grpcio-reflection==1.85.1",
    "protobuf==7.36.2",
    # what Ray Serve and Ray Train import at run time
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "annotated-doc==0.0.7",
    "anyio==4.16.0",
    "sniffio",
    "h11==0.16.0",
    "uvicorn==0.55.0",
    "watchfiles==1.3.0",
    "aiohttp-cors==0.8.1",
    "colorful==0.5.8",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "attrs",
    "six",
    "opencensus==0.11.4",
    "opencensus-context==0.1.3",
    "google-api-core",
    "googleapis-common-protos",
    "proto-plus",
    "google-auth",
    "cachetools",
    "pyasn1",
    "pyasn1-modules",
    "rsa",
    "opentelemetry-api==1.45.2",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-prometheus==0.66b2",
    "opentelemetry-proto==1.45.2",
    "opentelemetry-semantic-conventions==0.66b2",
    "importlib-metadata",
    "zipp",
    "smart-open==9.0.4",
    "wrapt",
    "filelock",
    "py-spy==0.4.3",
    "mmh3==5.3.1",
    "psutil",
    "fsspec",
    # the tests
    "pytest",
    "pluggy",
    "iniconfig",
    "pytest-timeout",
)


def run(*command: str) -> None:
    subprocess.run(command, check=True)


PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "any")


def download(spec: str, into: Path) -> None:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    run(
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--abi",
        "cp312",
        *platforms,
        "-d",
        str(into),
        spec,
    )


def pack(wheels: list[Path], dropped: tuple[str, ...], target: Path) -> dict[str, int]:
    """The wheels' trees without `dropped`, binaries stripped of symbols, as one tar.xz (unpacked
    into a folder on PYTHONPATH there)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.infolist():
                    if not member.filename.startswith(dropped):
                        archive.extract(member, tree)
                        mode = member.external_attr >> 16
                        if mode:
                            (tree / member.filename).chmod(mode & 0o777)
        lay_out_data(tree)
        strip = shutil.which("strip")
        for binary in [tree / b for b in RAY_BINARIES] + list(tree.glob("pyarrow/*.so*")):
            if strip and binary.is_file() and not binary.is_symlink():
                subprocess.run([strip, "--strip-unneeded", str(binary)], check=True)
        unpacked = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
        with tarfile.open(target, "w:xz", preset=6) as archive:
            for entry in sorted(tree.iterdir()):
                archive.add(entry, arcname=entry.name)
    return {
        "wheel_bytes": sum(w.stat().st_size for w in wheels),
        "unpacked_kept_bytes": unpacked,
        "packed_bytes": target.stat().st_size,
    }


def lay_out_data(tree: Path) -> None:
    """Each wheel's `<name>.data/` where pip puts it: scripts into bin/ (the folder run.sh puts on
    PATH), libraries at the top."""
    for data in tree.glob("*.data"):
        for kind in data.iterdir():
            if kind.name == "scripts":
                shutil.copytree(kind, tree / "bin", dirs_exist_ok=True)
            elif kind.name in ("purelib", "platlib"):
                shutil.copytree(kind, tree, dirs_exist_ok=True)
        shutil.rmtree(data)


def tree_bytes() -> int:
    """What travels with every run besides the payload: the files git tracks and the untracked ones
    it does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sum(path.stat().st_size for name in listed.split("\0") if name and (path := ROOT / name).is_file())


def wheels_of(specs: tuple[str, ...], cache: Path) -> list[Path]:
    """One downloaded wheel per spec (two versions of one package would shadow each other there)."""
    wanted = {spec.split("==")[0].split(">=")[0].lower().replace("-", "_") for spec in specs}
    found: dict[str, list[Path]] = {}
    for wheel in sorted(cache.glob("*.whl")):
        found.setdefault(wheel.name.split("-")[0].lower(), []).append(wheel)
    twice = {name: [w.name for w in found[name]] for name in wanted if len(found.get(name, [])) > 1}
    if twice:
        raise SystemExit(f"{cache} holds several versions of {twice}: delete the ones not wanted")
    return [found[name][0] for name in sorted(wanted)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "payload")
    parser.add_argument("--cache", type=Path, default=HERE / ".download", help="downloaded wheels, reused")
    parser.add_argument("--train-deps", action="store_true", help="also pyarrow and pandas (for ray.train)")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    download(RAY, args.cache)
    ray_wheel = next(args.cache.glob("ray-2.60.0-cp312-*.whl"))
    ray = pack([ray_wheel], RAY_DROPPED, args.out / "ray-2.60.0-cp312-stripped.tar.xz")
    if args.train_deps:
        for spec in TRAIN_DEPS:
            download(spec, args.cache)
        trees = [next(args.cache.glob(f"{spec.split('==')[0]}-{spec.split('==')[1]}-*.whl")) for spec in TRAIN_DEPS]
        dropped = tuple(d for drops in TRAIN_DEPS.values() for d in drops)
        ray["train_deps_packed_bytes"] = pack(trees, dropped, args.out / "train-deps-cp312.tar.xz")["packed_bytes"]
    for spec in WHEELS:
        download(spec, args.cache)
    wheels = wheels_of(WHEELS, args.cache)
    deps = pack(wheels, (), args.out / "deps-cp312.tar.xz")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    tree = tree_bytes()
    carried_mib = round((total + tree) / 2**20, 1)
    manifest = {
        "ray": ray,
        "deps": {**deps, "wheels": [w.name for w in wheels]},
        "total_bytes": total,
        "total_mib": round(total / 2**20, 1),
        "working_tree_mib": round(tree / 2**20, 1),
        "carried_mib": carried_mib,
        "carried_fits": carried_mib <= CARRY_LIMIT_MIB,
    }
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({k: v for k, v in manifest.items() if k != "deps"}, indent=2), f"\n{len(wheels)} wheels packed")
    if not manifest["carried_fits"]:
        print(f"the payload and the working tree make {carried_mib} MiB: over the {CARRY_LIMIT_MIB} MiB of one run")
    return manifest


if __name__ == "__main__":
    main()
