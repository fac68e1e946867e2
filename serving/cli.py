"""`cdserve up` (local Ray + registry + the Serve app from one config) and `cdserve generate`.

Heavy imports stay inside the handlers so that `cdserve --help` is fast.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Any

TARGET_ENV = "CDSERVE_GENERATOR"
DEFAULT_TARGET = "127.0.0.1:9000"


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="start a local Ray, a concept registry and the Generator service; print the endpoints",
        description="Runs until Ctrl-C. Without --config: the embedded default model and default limits.",
    )
    up.add_argument("--config", type=Path, help="ServingConfig YAML, or a Serve config file such as deploy/serve-local.yaml")
    up.add_argument("--data", type=Path, default=Path("cdserve-data"), help="registry data and concept cache folder")
    up.add_argument("--grpc-port", type=int, help="Serve gRPC proxy port (overrides the config)")
    up.add_argument("--num-cpus", type=int, help="CPUs Ray may use (default: all)")
    up.set_defaults(handler=_up)

    generate = subparsers.add_parser("generate", help="generate images through the Generator service")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--negative-prompt", default="")
    generate.add_argument("--concept", action="append", default=[], dest="concepts", help="'id' or 'id@version' (repeatable)")
    generate.add_argument("--naive-sum", action="store_true", help="combine several concepts by summing (baseline)")
    generate.add_argument("--steps", type=int, default=0)
    generate.add_argument("--guidance-scale", type=float, default=0.0)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--size", type=int, default=0, help="width and height in pixels (0: the model's)")
    generate.add_argument("--num-images", type=int, default=1)
    generate.add_argument("--scheduler", default="")
    generate.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    generate.add_argument("--target", default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
                          help=f"Serve gRPC proxy host:port (default ${TARGET_ENV} or {DEFAULT_TARGET})")  # fmt: skip
    generate.add_argument("--app", default="cdserve", help="Serve application name")
    generate.set_defaults(handler=_generate)


def _up(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import threading

    import ray

    from serving.app import run_app
    from serving.basemodels import default_model_dir
    from serving.config import ServingConfig, load_serving_config
    from serving.registry.config import RegistryConfig
    from serving.registry.server import load_base_spec, start_registry
    from shared.basemodel import SPEC_FILE, load_base_model

    config = load_serving_config(args.config) if args.config else ServingConfig()
    data = args.data.resolve()
    model_dir = (config.base_model.path or default_model_dir()).resolve()
    token = config.registry.token or secrets.token_urlsafe(24)
    updates: dict[str, Any] = {
        "base_model": {**config.base_model.model_dump(), "path": model_dir},
        "registry": {**config.registry.model_dump(), "token": token},
        "cache": {**config.cache.model_dump(), "disk_dir": config.cache.disk_dir or data / "concepts",
                  "reg_cache_dir": config.cache.reg_cache_dir or data / "merge"},
    }  # fmt: skip
    if args.grpc_port is not None:
        updates["grpc_port"] = args.grpc_port
    config = ServingConfig.model_validate({**config.model_dump(), **updates})

    spec_file = model_dir / SPEC_FILE
    spec = load_base_spec(spec_file) if spec_file.exists() else load_base_model(model_dir).spec
    host, _, port = config.registry.address.rpartition(":")
    registry_config = RegistryConfig(data_dir=data / "registry", host=host, port=int(port), metrics_port=0)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    registry = asyncio.run_coroutine_threadsafe(
        start_registry(registry_config, base_specs=[spec], tokens={token: "*"}), loop
    ).result(timeout=60)

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, _metrics_export_port=config.metrics_export_port)
    run_app(config)
    print(
        "cdserve is up\n"
        f"  generator (gRPC, Serve proxy): 127.0.0.1:{config.grpc_port}  application={config.app_name}\n"
        f"  registry  (gRPC):              {config.registry.address}  operator token: {token}\n"
        f"  metrics   (Prometheus):        http://127.0.0.1:{config.metrics_export_port}/metrics (Ray, Serve, replicas)\n"
        f"                                 http://127.0.0.1:{registry.metrics_port}/metrics (registry)\n"
        f"  base model:                    {model_dir} (fingerprint {spec.fingerprint})\n"
        f"try: cdserve concepts publish FILE --registry {config.registry.address} --token {token}\n"
        f"     cdserve generate --target 127.0.0.1:{config.grpc_port} --prompt '...' --concept ID --out out/\n"
        "Ctrl-C (or SIGTERM) stops everything.",
        flush=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        asyncio.run_coroutine_threadsafe(registry.stop(), loop).result(timeout=30)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from serving.client import GeneratorClient

    request = GeneratorClient.request(
        args.prompt, concepts=args.concepts, multi_concept="naive_sum" if args.naive_sum else "merge",
        negative_prompt=args.negative_prompt, steps=args.steps, guidance_scale=args.guidance_scale, seed=args.seed,
        width=args.size, height=args.size, num_images=args.num_images, scheduler=args.scheduler,
    )  # fmt: skip
    with GeneratorClient(args.target, application=args.app) as client, tqdm(desc="denoising", unit="step") as bar:

        def on_step(progress: Any) -> None:
            bar.total = progress.total_steps
            bar.n = progress.step
            bar.refresh()

        response = client.generate_with_progress(request, on_step)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(response.images):
        path = args.out / f"{response.request_id}-{i}.png"
        path.write_bytes(image.png)
        print(path)
    t = response.timings
    print(
        f"seed {response.seed}, concepts {list(response.concepts) or 'none'}, replica {response.replica}, "
        f"batch of {response.batch_requests}; total {t.total_ms:.0f} ms (queue {t.queue_ms:.0f}, "
        f"load {t.concept_load_ms:.0f}, merge {t.merge_ms:.0f}, denoise {t.denoise_ms:.0f})"
    )
    return 0
