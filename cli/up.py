"""`cdserve up` — the whole system locally from one config; prints the endpoints, runs until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="start a local Ray with the Generator service, a concept registry and the training service",
        description="Runs until Ctrl-C or SIGTERM. The registry and the training service run as their own "
        "processes and are restarted if they die. Without --config: the embedded default model and limits.",
    )
    up.add_argument(
        "--config", type=Path, help="ServingConfig YAML, or a Serve config file such as deploy/serve-local.yaml"
    )
    up.add_argument(
        "--data", type=Path, default=Path("cdserve-data"), help="registry, training, secrets and cache folder"
    )
    up.add_argument("--grpc-port", type=int, help="Serve gRPC proxy port (overrides the config)")
    up.add_argument("--training-port", type=int, default=0, help="training service port (default: a free one)")
    up.add_argument("--num-cpus", type=int, help="CPUs Ray may use (default: all)")
    up.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface the services bind (default 127.0.0.1; 0.0.0.0 serves other hosts)",
    )
    up.add_argument(
        "--tokens",
        type=Path,
        dest="tokens_file",
        help="YAML 'tokens: {<token>: <tenant>}' ('*' is the operator) for every service; the stack "
        "adds its own operator token, kept in DATA/secrets",
    )
    up.add_argument(
        "--image-root",
        type=Path,
        action="append",
        default=[],
        dest="image_roots",
        help="server folder training jobs may name images in (repeatable; default: none)",
    )
    up.set_defaults(handler=_up)


def _up(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from cli.stack import LocalStack
    from serving.config import ServingConfig, load_serving_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_serving_config(args.config) if args.config else ServingConfig()
    if args.grpc_port is not None:
        config = config.model_copy(update={"grpc_port": args.grpc_port})
    stop = threading.Event()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt  # while starting: unwinds through the stack's cleanup

    signal.signal(signal.SIGTERM, interrupt)
    stack = LocalStack(
        config,
        args.data,
        num_cpus=args.num_cpus,
        host=args.host,
        tokens_file=args.tokens_file,
        image_roots=args.image_roots,
        training_port=args.training_port,
    )
    with stack as endpoints:
        for signum in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own
            signal.signal(signum, lambda *_: stop.set())
        print(
            f"cdserve is up\n{endpoints.describe()}\n"
            f"try: cdserve train --images DIR --category dog --id my-dog --server {endpoints.training} "
            f"--token TOKEN --watch\n"
            f"     cdserve generate --target {endpoints.generator} --prompt '...' --concept ID --out out/\n"
            "Ctrl-C (or SIGTERM) stops everything.",
            flush=True,
        )
        stop.wait()
    return 0
