"""`cdserve` — dispatches to subcommands. Each module in COMMAND_MODULES exposes
`register(subparsers)` and keeps its heavy imports inside the handlers, so `cdserve --help` is fast.
A typed error from any subcommand (a refused value, an unknown concept, a service not reachable)
is one line on stderr and exit status 1, never a traceback: it is the user's to act on.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from shared.errors import CdserveError, Unavailable

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


def error_line(error: CdserveError) -> str:
    where = f" [{error.field}]" if error.field and error.field not in error.message else ""
    hint = " (is the service running, and is the address right?)" if isinstance(error, Unavailable) else ""
    return f"error ({error.reason}){where}: {error.message}{hint}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CdserveError as e:
        print(error_line(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
