"""`cdserve` — dispatches to subcommands. Each module in COMMAND_MODULES exposes
`register(subparsers)` and keeps its heavy imports inside the handlers, so `cdserve --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "serving.registry.cli",
    "serving.cli",
    "training.cli",
    "cli.up",
    "cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdserve", description="Serve Custom Diffusion concepts at scale.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # that part of the system is not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
