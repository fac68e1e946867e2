"""`cdserve up` — the whole system locally from one config; prints the endpoints, runs until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="start a local Ray with the Generator service, a concept registry and the training service",
        description="Runs until Ctrl-C. Without --config: the embedded default model and default limits.",
    )
    up.add_argument("--config", type=Path, help="ServingConfig YAML, or a Serve config file such as deploy/serve-local.yaml")
    up.add_argument("--data", type=Path, default=Path("cdserve-data"), help="registry, training and cache folder")
    up.add_argument("--grpc-port", type=int, help="Serve gRPC proxy port (overrides the config)")
    up.add_argument("--num-cpus", type=int, help="CPUs Ray may use (default: all)")
    up.set_defaults(handler=_up)


def _up(args: argparse.Namespace) -> int:
    import signal
    import threading

    from cli.stack import LocalStack
    from serving.config import ServingConfig, load_serving_config

    config = load_serving_config(args.config) if args.config else ServingConfig()
    if args.grpc_port is not None:
        config = config.model_copy(update={"grpc_port": args.grpc_port})
    stop = threading.Event()
    with LocalStack(config, args.data, num_cpus=args.num_cpus) as endpoints:
        for signum in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own
            signal.signal(signum, lambda *_: stop.set())
        print(f"cdserve is up\n{endpoints.describe()}\n"
              f"try: cdserve train --images DIR --category dog --id my-dog --server {endpoints.training} "
              f"--token {endpoints.token} --watch\n"
              f"     cdserve generate --target {endpoints.generator} --prompt '...' --concept ID --out out/\n"
              "Ctrl-C (or SIGTERM) stops everything.", flush=True)  # fmt: skip
        stop.wait()
    return 0
