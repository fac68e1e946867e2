"""Regenerate the Python modules from the .proto files: `python -m proto.build`.

The generated modules are committed so that installing cdserve needs no protoc;
`tests/contract/test_proto_current.py` fails when they are stale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTO_DIR.parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc on every .proto file, writing `out_root/proto/*_pb2*.py`; returns the files."""
    from grpc_tools import protoc

    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{REPO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(REPO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted(p for p in (out_root / "proto").iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def stale_modules() -> list[str]:
    """Names of generated modules that differ from what protoc would write now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
    committed = {p.name: p.read_bytes() for p in PROTO_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    return sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale modules")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_modules()
        for name in stale:
            print(f"stale: proto/{name}")
        return 1 if stale else 0
    for path in PROTO_DIR.iterdir():
        if path.name.endswith(GENERATED_SUFFIXES):
            path.unlink()
    generate(REPO_ROOT)
    print(f"regenerated {len(proto_files())} proto files into {PROTO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
