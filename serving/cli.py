"""`cdserve generate`: images through the Generator service, with a progress bar.

Heavy imports stay inside the handlers so that `cdserve --help` is fast.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

TARGET_ENV = "CDSERVE_GENERATOR"
TOKEN_ENV = "CDSERVE_TOKEN"
DEFAULT_TARGET = "127.0.0.1:9000"


def register(subparsers: argparse._SubParsersAction) -> None:
    generate = subparsers.add_parser("generate", help="generate images through the Generator service")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--negative-prompt", default="")
    generate.add_argument(
        "--concept", action="append", default=[], dest="concepts", help="'id' or 'id@version' (repeatable)"
    )
    generate.add_argument("--naive-sum", action="store_true", help="combine several concepts by summing (baseline)")
    generate.add_argument("--steps", type=int, default=0)
    generate.add_argument("--guidance-scale", type=float, default=0.0)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--size", type=int, default=0, help="width and height in pixels (0: the model's)")
    generate.add_argument("--num-images", type=int, default=1)
    generate.add_argument("--scheduler", default="")
    generate.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    generate.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"Serve gRPC proxy host:port (default ${TARGET_ENV} or {DEFAULT_TARGET})",
    )
    generate.add_argument("--app", default="cdserve", help="Serve application name")
    generate.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default ${TOKEN_ENV})")
    generate.add_argument("--tls-ca", type=Path, help="PEM bundle to trust; enables TLS (to a TLS front of the proxy)")
    generate.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from serving.client import GeneratorClient

    request = GeneratorClient.request(
        args.prompt,
        concepts=args.concepts,
        multi_concept="naive_sum" if args.naive_sum else "merge",
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        seed=args.seed,
        width=args.size,
        height=args.size,
        num_images=args.num_images,
        scheduler=args.scheduler,
    )
    client = GeneratorClient(args.target, application=args.app, token=args.token, tls_ca_file=args.tls_ca)
    with client, tqdm(desc="denoising", unit="step") as bar:

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
