"""Training step time and peak memory with the paper's recipe (batch 8 targets + 8 regularisation
images per step, mode kv), extrapolated to the paper's 250 steps.

    python -m bench.training                                    # tiny model, CPU → training-cpu.json
    python -m bench.training --model sd15 --device cuda --precision bf16   # SD 1.5 architecture @512

Writes to `--out` (default out/bench/, ignored by git): bench/results keeps none of its output, since
the tiny CPU run only shows that the bench runs (bench/README.md).

The SD 1.5 run uses random weights (nothing can be downloaded): speed and memory do not depend on
the values. Target on one H100: ≤ 3 min for 250 steps (the paper: ~6 min on 2×A100).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.common import SCRATCH, device_name, write_result
from bench.engine import build_model
from training.config import ConceptConfig, Recipe, TrainConfig
from training.loop import build_trainer

PAPER_STEPS = 250


def synthetic_images(folder: Path, count: int, size: int, *, captions: str | None = None) -> list[str]:
    """Coloured squares; with `captions`, also a captions.txt (a real regularisation folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = Image.new("RGB", (size, size), (40 * i % 255, 90, 200 - 20 * i % 200))
        image.paste((255, 255, 255), (size // 4, size // 4, size // 2, size // 2))
        paths.append(str(folder / f"{i:03d}.png"))
        image.save(paths[-1])
    if captions is not None:
        (folder / "captions.txt").write_text("".join(f"{Path(p).name}\t{captions}\n" for p in paths))
    return paths


def synthetic_config(
    folder: Path, size: int, base_model: str, *, regularization: bool, **recipe_fields: Any
) -> TrainConfig:
    """One concept of coloured squares, with regularisation images captioned "photo of a dog" (all
    kept) or none, under the paper's recipe with `recipe_fields` changed; every file goes under `folder`."""
    concept = ConceptConfig(
        concept_id="bench",
        category="dog",
        images=synthetic_images(folder / "targets", 6, size),
        regularization="real" if regularization else "none",
        reg_dir=str(folder / "reg") if regularization else None,
    )
    if regularization:
        synthetic_images(folder / "reg", 16, size, captions="photo of a dog")
    recipe = Recipe(reg_similarity_threshold=-1.0, **recipe_fields)
    return TrainConfig(base_model=base_model, concepts=[concept], recipe=recipe, output_dir=str(folder / "out"))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["no", "fp16", "bf16"], default="bf16", help="autocast on GPU")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--no-reg", action="store_true", help="targets only (half the images per step)")
    parser.add_argument("--out", type=Path, default=SCRATCH, help="results folder (default out/bench)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    built = time.perf_counter()
    base, size = build_model(args.model, args.device, torch.float32)  # fp32 master weights; autocast computes
    build_s = time.perf_counter() - built
    with tempfile.TemporaryDirectory() as tmp:
        config = synthetic_config(
            Path(tmp),
            size,
            args.model,
            regularization=not args.no_reg,
            batch_size=args.batch_size,
            mixed_precision=args.precision,
            use_gpu=device.type == "cuda",
        )
        trainer = build_trainer(config, base)
        for _ in range(2):
            trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds_per_step = (time.perf_counter() - start) / args.steps
    result = {
        "model": args.model,
        "device": device_name(args.device),
        "precision": args.precision if device.type == "cuda" else "fp32",
        "batch_targets": args.batch_size,
        "batch_images_per_step": args.batch_size * (1 if args.no_reg else 2),
        "resolution": trainer.source.resolution,
        "mode": "kv",
        "trainable_parameters": sum(p.numel() for p in trainer.trainable.values()),
        "timed_steps": args.steps,
        "seconds_per_step": round(seconds_per_step, 4),
        f"seconds_for_{PAPER_STEPS}_steps": round(seconds_per_step * PAPER_STEPS, 1),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "model_build_s": round(build_s, 1),
        "final_loss": trainer.losses[-1],
    }
    name = (
        "training-cpu"
        if (args.model, device.type) == ("tiny", "cpu")
        else f"training-{args.model}-{device.type}-{result['precision']}"
    )
    path = write_result(name, result, folder=args.out)
    print(result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
