"""torch.compile of the UNet against eager, and recompiles over many concept switches:

    python -m bench.device.compile_bench --out DIR [--model sd15 --device cuda --dtype fp16]

(1) images/s of the engine eager and compiled at each batch size (the first compiled call of a
bucket, its compile time, is reported apart); (2) `--switches` UNet calls, each with a batch of
other concepts, through the compiled UNet: dynamo's graph count must not grow. Results are
written after every part, so a run cut short still reports what it measured.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.common import device_name, interleaved_medians
from bench.engine import DTYPES, build_model
from serving.engine import DeltaEngine, GenerationRequest
from serving.engine.conditioning import RowLayout, build_conditioning
from tests.support.synthetic import random_concept


def graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "sd15"], default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--switches", type=int, default=1000)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend ('eager' checks the plumbing)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from serving.engine.unet import UNetRunner

    base, size = build_model(args.model, args.device, DTYPES[args.dtype])
    eager = DeltaEngine(base)
    compiled = DeltaEngine(base)
    compiled.unet_runner = UNetRunner(compiled.unet, compile=True, backend=args.backend)
    concepts = [
        random_concept(base.spec, f"s{i}", seed=i, rank=args.rank, scale=0.05)[1].to(args.device, base.dtype)
        for i in range(32)
    ]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rng = random.Random(0)
    result: dict[str, Any] = {
        "device": device_name(args.device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "model": args.model,
        "dtype": args.dtype,
        "steps": args.steps,
        "image_size": size,
        "backend": args.backend,
        "batches": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (args.out / "compile.json").write_text(json.dumps(result, indent=2) + "\n")

    def generating(engine: DeltaEngine, batch: int) -> Callable[[], object]:
        """One timed run: a fresh batch of requests to `engine` at each call."""
        return lambda: engine.generate(requests(batch))

    def requests(batch: int) -> list[GenerationRequest]:
        return [
            GenerationRequest(
                f"a photo of a <s{c}> dog", delta=concepts[c], steps=args.steps, height=size, width=size, seed=i
            )
            for i, c in enumerate(rng.sample(range(len(concepts)), batch))
        ]

    for position, batch in enumerate(int(b) for b in args.batches.split(",")):
        sync()
        started = time.perf_counter()
        compiled.generate(requests(batch))  # compiles this batch's bucket
        sync()
        first_s = time.perf_counter() - started
        runs = {"eager": eager, "compiled": compiled}
        seconds = interleaved_medians(
            {name: generating(engine, batch) for name, engine in runs.items()},
            args.repeats,
            sync,
        )
        result["batches"][batch] = {
            "eager_images_per_s": batch / seconds["eager"],
            "compiled_images_per_s": batch / seconds["compiled"],
            "speedup": seconds["eager"] / seconds["compiled"],
            "first_compiled_call_s": first_s,
        }
        save()
        if position == 0:
            result["switches"] = switches(compiled, requests, batch, args.switches, sync)
            save()
    print(json.dumps(result, indent=2))
    return result


def switches(engine: DeltaEngine, requests: Any, batch: int, count: int, sync: Any) -> dict[str, Any]:
    """`count` UNet calls through the compiled runner, each with a new batch of concepts."""
    before, started = graphs(), time.perf_counter()
    for i in range(count):
        batch_requests = requests(batch)
        with torch.no_grad():
            features, added = engine._encode(batch_requests)
            layout = RowLayout([r.num_images for r in batch_requests])
            conditioning = build_conditioning(engine.layers, features, [r.delta for r in batch_requests], layout)
            step = engine.unet_runner.bind(
                features[layout.feature_rows.to(features.device)], conditioning, added or None
            )
            size = batch_requests[0].height // engine.vae_scale
            sample = torch.randn(
                layout.rows, engine.unet.config.in_channels, size, size, device=features.device, dtype=features.dtype
            )
            step(sample, torch.tensor(999 - i % 1000, device=features.device))
    sync()
    return {
        "switches": count,
        "batch": batch,
        "new_graphs": graphs() - before,
        "seconds": time.perf_counter() - started,
    }


if __name__ == "__main__":
    main()
