"""`cdserve train …` (submit a concept to the training service) and `cdserve training serve|run`
(run the service; or train in this process without Ray, from a TrainConfig YAML).

Heavy imports stay inside the handlers so that `cdserve --help` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

SERVICE_ENV = "CDSERVE_TRAINING"
TOKEN_ENV = "CDSERVE_TOKEN"
DEFAULT_SERVICE = "127.0.0.1:50061"


def _uint(text: str) -> int:
    """The proto's unsigned fields: a negative value is an argparse error naming the flag (range
    checks beyond that are the service's, which names the recipe field)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


RECIPE_FLAGS = {
    "steps": _uint,
    "batch_size": _uint,
    "learning_rate": float,
    "token_learning_rate": float,
    "augment": _bool,
    "mode": str,
    "seed": _uint,
    "num_workers": _uint,
    "resolution": _uint,
    "compress_energy": float,
    "compress_rank": _uint,
    "stand_in_probability": float,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_training(subparsers)


# -- cdserve train ------------------------------------------------------------------------------


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="submit a concept's images to the training service")
    parser.add_argument(
        "--images",
        type=Path,
        required=True,
        help="folder of PNG/JPEG; optional captions.txt, 'file<TAB>caption' lines (several for several wordings)",
    )
    parser.add_argument("--category", required=True, help="category word, e.g. dog")
    parser.add_argument("--id", required=True, dest="concept_id", help="concept id, e.g. my-dog")
    parser.add_argument("--token-name", dest="modifier_token", default="", help="modifier token (default <cd-ID>)")
    parser.add_argument("--reg", choices=["auto", "real", "generated", "none"], default="auto", help="regularisation")
    parser.add_argument("--reg-dir", default="", help="folder of regularisation images + captions.txt (cluster path)")
    parser.add_argument("--public", action="store_true", help="publish the concept as public")
    parser.add_argument("--watch", action="store_true", help="follow the job until it ends")
    parser.add_argument("--server", default=os.environ.get(SERVICE_ENV, DEFAULT_SERVICE), help="service host:port")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default ${TOKEN_ENV})")
    parser.add_argument("--tls-ca", type=Path, help="PEM bundle to trust; enables TLS")
    for name, kind in RECIPE_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=name, help=f"recipe.{name}")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from proto import training_pb2
    from training.client import TrainingClient, uploads_from_folder

    reg = {"auto": 0, "real": training_pb2.REAL, "generated": training_pb2.GENERATED, "none": training_pb2.NONE}
    recipe = training_pb2.Recipe(**{n: getattr(args, n) for n in RECIPE_FLAGS if getattr(args, n) is not None})
    concept = training_pb2.ConceptSpec(
        concept_id=args.concept_id,
        category=args.category,
        modifier_token=args.modifier_token,
        regularization=reg[args.reg],  # type: ignore[arg-type]  # the generated stub names the enum class; protobuf takes its int
        regularization_uri=args.reg_dir,
    )
    spec = training_pb2.TrainingSpec(concepts=[concept], recipe=recipe, public=args.public)
    with TrainingClient(args.server, token=args.token, tls_ca_file=args.tls_ca) as client:
        job = client.submit(spec, uploads_from_folder(args.images))
        print(f"job {job.job_id} {training_pb2.JobState.Name(job.state)}")
        if not args.watch:
            return 0
        for update in client.watch(job.job_id):
            job = update
            print(_describe(job), flush=True)
    return 0 if job.state == training_pb2.SUCCEEDED else 1


def _describe(job: Any) -> str:
    from proto import training_pb2

    line = (
        f"{training_pb2.JobState.Name(job.state):10s} step {job.step}/{job.total_steps} "
        f"loss {job.loss:.4f} eta {job.eta_s:.0f}s"
    )
    if job.attempt > 1:  # the workers restarted: the step went back to a checkpoint
        line += f" (attempt {job.attempt}, resumed at step {job.resumed_from_step})"
    if job.published:
        line += f" published {', '.join(job.published)}"
    if job.error.message:
        line += f" error: {job.error.message}"
    return line


# -- cdserve training serve|run -------------------------------------------------------------------


def _register_training(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("training", help="run the training service, or train locally without Ray")
    verbs = parser.add_subparsers(dest="training_command", required=True)
    serve = verbs.add_parser("serve", help="serve the Training gRPC API until SIGTERM/SIGINT")
    serve.add_argument("--config", type=Path, help="YAML with TrainingServiceConfig fields")
    serve.add_argument("--data", type=Path, dest="data_dir", help="folder for jobs.sqlite3 and job directories")
    serve.add_argument("--base-model", help="diffusers directory of the base model (readable by the cluster)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--metrics-port", type=int)
    serve.add_argument("--ray-address", help="Ray dashboard address, e.g. http://127.0.0.1:8265")
    serve.add_argument("--registry", help="registry host:port the jobs publish to")
    serve.add_argument(
        "--job-token-key",
        type=Path,
        dest="job_token_key_file",
        help="key file shared with the registry; signs each job's publish-only token",
    )
    serve.add_argument("--tokens", type=Path, dest="tokens_file", help="YAML/JSON 'tokens: {<token>: <tenant>}'")
    serve.add_argument("--tls-cert", type=Path, dest="tls_cert_file", help="PEM certificate chain (enables TLS)")
    serve.add_argument("--tls-key", type=Path, dest="tls_key_file", help="PEM private key")
    serve.set_defaults(handler=_serve, serve_parser=serve)

    run = verbs.add_parser("run", help="train in this process (no Ray) from a TrainConfig YAML")
    run.add_argument("config", type=Path, help="YAML with TrainConfig fields")
    run.set_defaults(handler=_run_local)


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from shared.config import file_and_flag_fields
    from training.service.config import TrainingServiceConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fields = file_and_flag_fields(TrainingServiceConfig, args.config, vars(args))
    missing = [name for name in ("data_dir", "base_model") if name not in fields]
    if missing:
        args.serve_parser.error(f"{', '.join(missing)} required (flag or --config)")
    asyncio.run(_serve_until_signalled(TrainingServiceConfig(**fields)))
    return 0


async def _serve_until_signalled(config: Any) -> None:
    from shared.rpc_server import wait_for_stop_signal
    from training.service.server import start_training_service

    handle = await start_training_service(config)
    print(f"training service on {config.host}:{handle.port} (metrics :{handle.metrics_port})", flush=True)
    await wait_for_stop_signal()
    await handle.stop()


def _run_local(args: argparse.Namespace) -> int:
    import logging

    from shared.config import load_yaml
    from training.config import TrainConfig
    from training.loop import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = train(load_yaml(TrainConfig, args.config))
    print(f"wrote {result.path} ({result.metrics})", file=sys.stderr)
    return 0
