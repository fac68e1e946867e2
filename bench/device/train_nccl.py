"""One Ray Train run of the Custom Diffusion loop on the tiny model with one worker: on a GPU the
worker group uses NCCL (Ray Train's backend for GPU workers), which is what this run proves works.

    python -m bench.device.train_nccl --out DIR [--cpu]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from shared import artifact
from shared.tiny import build_tiny_pipeline
from training.config import ConceptConfig, Recipe, TrainConfig
from training.distributed import DistributedOptions, run_distributed

STEPS = 20


def images(folder: Path, count: int = 4) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = Image.new("RGB", (32, 32), (40 * i, 200 - 30 * i, 90))
        image.paste((255, 255, 255), (4, 4, 14, 14))
        paths.append(str(folder / f"{i}.png"))
        image.save(paths[-1])
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpu", action="store_true", help="one CPU worker over gloo (the plumbing, without a GPU)")
    args = parser.parse_args(argv)
    import ray
    import torch

    work = Path(tempfile.mkdtemp(prefix="cdserve-nccl-"))
    base_dir = work / "tiny"
    build_tiny_pipeline(seed=0).save_pretrained(base_dir)
    concept = ConceptConfig(
        concept_id="nccl-check", category="dog", images=images(work / "images"), regularization="none"
    )
    config = TrainConfig(
        base_model=str(base_dir),
        concepts=[concept],
        output_dir=str(work / "out"),
        recipe=Recipe(steps=STEPS, batch_size=2, num_workers=1, checkpoint_every=10, use_gpu=not args.cpu),
    )
    ray.init(include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    try:
        path = run_distributed(config, DistributedOptions(job_dir=str(work), max_failures=0))
    finally:
        ray.shutdown()
    result = artifact.load(path)
    payload = {
        "backend": "gloo" if args.cpu else "nccl",
        "use_gpu": not args.cpu,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "steps": int(result.header.metrics.get("steps", 0)),
        "final_loss": result.header.metrics.get("final_loss", result.header.metrics.get("loss")),
        "wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train-nccl.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload))
    assert payload["steps"] == STEPS, payload
    return payload


if __name__ == "__main__":
    main()
