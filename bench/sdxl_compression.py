"""What SVD compression costs an SDXL concept, and what it weighs at the real SDXL shapes.

Trains one concept on the tiny SDXL (`tests.support.tiny_sdxl`), then for each energy fraction compresses
its K/V delta as training does (`shared.compress`) and measures:

* the kept rank per layer (max, mean, and as a fraction of the layer's full rank);
* the fidelity cost on the tiny model: relative error of every cross-attention layer's K and V on the
  concept's own caption features (of the delta's contribution, and of the whole K/V the attention
  sees), and the images generated with the full against the compressed delta (same seeds):
  mean absolute difference in 8-bit levels and PSNR;
* the artifact size at the real SDXL UNet's shapes (built on the meta device), exact: with the
  tiny model's largest kept rank in every layer, and with the same mean fraction of each layer's
  full rank (what the energy rule would keep if a real concept's spectrum fell like the tiny one's).

    python -m bench.sdxl_compression            # writes bench/results/sdxl-compression-cpu.{json,md}
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import RESULTS
from serving.engine import GenerationRequest, create_engine
from shared import artifact
from shared.basemodel import BaseModel, cross_attention_layers, layer_map, prepare_base_model
from shared.compress import compress
from shared.delta import ConceptDelta
from shared.spec import BaseSpec
from tests.support.synthetic import random_concept
from tests.support.tiny_sdxl import build_sdxl_unet_on_meta, build_tiny_sdxl_pipeline
from training.config import ConceptConfig, Recipe, TrainConfig
from training.loop import build_trainer
from training.output import DEFAULT_COMPRESSION_BY_FAMILY

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "examples" / "twotone-star" / "targets"
ENERGIES = (0.8, 0.9, 0.95, 0.99, 1.0)
RANKS = (4, 8, 16)
TARGET_BYTES = 20 * 10**6
PROMPTS = ("a photo of a {token} star", "a {token} star on a pink background", "two {token} stars, close up")


def sdxl_spec() -> BaseSpec:
    """The real SDXL base's layer map (meta device: exact shapes, no memory)."""
    layers = layer_map(build_sdxl_unet_on_meta())
    return BaseSpec(
        fingerprint="sdxl-architecture", layers=layers, token_dim=2048, family="sdxl", token_dims=(768, 1280)
    )


def uniform(spec: BaseSpec, rank: int) -> dict[str, int]:
    return {layer.name: rank for layer in spec.layers}


def artifact_bytes(spec: BaseSpec, ranks: dict[str, int], overhead: int) -> int:
    """fp16 artifact bytes with `ranks[layer]` kept in K and V of each layer (+ header and token)."""
    return overhead + sum(2 * 2 * ranks[layer.name] * (layer.in_features + layer.out_features) for layer in spec.layers)


def header_overhead(spec: BaseSpec) -> int:
    """Bytes of a real fp16 SDXL artifact beyond its K/V factors (safetensors and JSON headers, token)."""
    header, delta = random_concept(spec, "size", rank=1, dtype=torch.float16)
    return len(artifact.to_bytes(header, delta)) - artifact_bytes(spec, uniform(spec, 1), 0)


def train_concept(base: BaseModel, steps: int, folder: Path) -> tuple[ConceptDelta, list[str], str]:
    concept = ConceptConfig(
        concept_id="star-xl", category="star", images=sorted(map(str, IMAGES.glob("*.png"))), regularization="none"
    )
    recipe = Recipe(steps=steps, batch_size=2, resolution=16, learning_rate=1e-3)
    config = TrainConfig(base_model="tiny-sdxl", concepts=[concept], recipe=recipe, output_dir=str(folder))
    trainer = build_trainer(config, base)
    while trainer.step < config.total_steps:
        trainer.train_step()
    return trainer.delta(), concept.all_captions(), concept.token


@torch.no_grad()
def kv_errors(engine: Any, full: ConceptDelta, small: ConceptDelta, captions: list[str]) -> dict[str, float]:
    """Relative Frobenius errors of K and V over every layer on the captions' features (with the
    concept's own token embeddings): of ΔK/ΔV, and of the whole K/V."""
    prompts = engine.prompts
    tokens = list(full.token_embeddings)
    features = prompts.encode([prompts.tokenize(c, tokens) for c in captions], full.token_embeddings)
    sums = {"delta_err": 0.0, "delta": 0.0, "whole": 0.0}
    for name, attn in cross_attention_layers(engine.unet).items():
        for projection in ("to_k", "to_v"):
            base = getattr(attn, projection)(features)
            own = full.layers[name][projection].apply(features)
            err = own - small.layers[name][projection].apply(features)
            sums["delta_err"] += float(err.pow(2).sum())
            sums["delta"] += float(own.pow(2).sum())
            sums["whole"] += float((base + own).pow(2).sum())
    return {
        "kv_delta_relative_error": math.sqrt(sums["delta_err"] / sums["delta"]),
        "kv_relative_error": math.sqrt(sums["delta_err"] / sums["whole"]),
    }


def images(engine: Any, delta: ConceptDelta | None, token: str, seeds: int) -> np.ndarray:
    """The same prompts and seeds with `delta`; with none, the prompts without the modifier token."""
    requests = [
        GenerationRequest(
            " ".join(prompt.format(token=token if delta else "").split()),
            delta=delta,
            seed=seed,
            steps=20,
            guidance_scale=5.0,
            height=16,
            width=16,
        )
        for prompt in PROMPTS
        for seed in range(seeds)
    ]
    return np.concatenate([r.images for r in engine.generate(requests)])


def image_difference(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    a, b = (np.round(x * 255.0) for x in (reference, other))
    mse = float(np.mean((a - b) ** 2))
    return {
        "mean_abs_diff_levels": float(np.mean(np.abs(a - b))),
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse),
    }


def settings() -> list[tuple[str, dict[str, Any]]]:
    default = DEFAULT_COMPRESSION_BY_FAMILY["sdxl"]
    return [
        *((f"energy {energy}", {"energy": energy}) for energy in ENERGIES),
        *((f"rank {rank}", {"rank": rank}) for rank in RANKS),
        (f"default: energy {default['energy']}, max_rank {default['max_rank']}", default),
    ]


def run(steps: int, seeds: int) -> dict[str, Any]:
    started = time.perf_counter()
    base = prepare_base_model(build_tiny_sdxl_pipeline(seed=0), source="tiny-sdxl")
    with tempfile.TemporaryDirectory() as folder:
        full, captions, token = train_concept(base, steps, Path(folder))
    train_s = time.perf_counter() - started
    engine = create_engine(base)
    reference = images(engine, full, token, seeds)
    concept_effect = image_difference(reference, images(engine, None, token, seeds))
    real = sdxl_spec()
    overhead = header_overhead(real)
    tiny_full_rank = {layer.name: min(layer.in_features, layer.out_features) for layer in base.spec.layers}
    rows = []
    for setting, options in settings():
        small, report = compress(full, **options)
        ranks = {name: max(w.rank for w in projections.values()) for name, projections in small.layers.items()}
        fraction = sum(ranks[name] / tiny_full_rank[name] for name in ranks) / len(ranks)
        scaled = {layer.name: math.ceil(fraction * min(layer.in_features, layer.out_features)) for layer in real.layers}
        rows.append(
            {
                "setting": setting,
                "max_rank": max(ranks.values()),
                "mean_rank": sum(ranks.values()) / len(ranks),
                "mean_fraction_of_full_rank": fraction,
                "weight_relative_error": report.overall_relative_error,
                **kv_errors(engine, full, small, captions),
                **image_difference(reference, images(engine, small, token, seeds)),
                "sdxl_bytes_at_max_rank": artifact_bytes(real, uniform(real, max(ranks.values())), overhead),
                "sdxl_bytes_at_same_fraction": artifact_bytes(real, scaled, overhead),
            }
        )
    per_rank = artifact_bytes(real, uniform(real, 1), 0)
    return {
        "what": "SVD compression of a tiny-SDXL concept: kept rank, fidelity cost, size at SDXL shapes",
        "concept": {
            "images": str(IMAGES.relative_to(ROOT)),
            "steps": steps,
            "captions": captions,
            "tiny_layers": len(tiny_full_rank),
            "tiny_full_ranks": sorted(set(tiny_full_rank.values())),
        },
        "sdxl": {
            "layers": len(real.layers),
            "full_bytes_fp16": overhead + sum(2 * 2 * layer.in_features * layer.out_features for layer in real.layers),
            "bytes_per_rank_fp16": per_rank,
            "overhead_bytes": overhead,
            "largest_rank_within_target": (TARGET_BYTES - overhead) // per_rank,
        },
        "images_per_setting": len(PROMPTS) * seeds,
        "concept_effect": concept_effect,
        "rows": rows,
        "train_s": train_s,
        "total_s": time.perf_counter() - started,
    }


def markdown(result: dict[str, Any]) -> str:
    sdxl = result["sdxl"]
    lines = [
        "# SDXL concept compression (CPU, tiny SDXL)",
        "",
        f"One concept trained {result['concept']['steps']} steps on the tiny SDXL "
        f"({result['concept']['tiny_layers']} cross-attention layers, full ranks "
        f"{result['concept']['tiny_full_ranks']}), compressed by energy (share of the singular values' sum kept), "
        "by fixed rank and with the training default; images: "
        f"{result['images_per_setting']} per setting (same prompts and seeds, 20 steps), full against compressed.",
        f"At the real SDXL shapes ({sdxl['layers']} layers) a full fp16 K/V delta is "
        f"{sdxl['full_bytes_fp16'] / 1e6:.1f} MB; each rank kept in every layer costs "
        f"{sdxl['bytes_per_rank_fp16'] / 1e6:.3f} MB, so rank {sdxl['largest_rank_within_target']} is the "
        f"largest within {TARGET_BYTES / 1e6:.0f} MB.",
        "For scale, the concept itself (its full delta against none, the modifier token dropped from the "
        f"prompts) changes the images by {result['concept_effect']['mean_abs_diff_levels']:.2f} levels on average "
        f"(PSNR {result['concept_effect']['psnr_db']:.1f} dB).",
        "",
        "| setting | max rank | mean rank | mean fraction of full rank | ‖ΔW error‖/‖ΔW‖ | ΔK/ΔV rel. error | "
        "K/V rel. error | image mean abs diff (levels) | PSNR dB | SDXL MB at max rank | SDXL MB at same fraction |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['setting']} | {row['max_rank']} | {row['mean_rank']:.1f} | "
            f"{row['mean_fraction_of_full_rank']:.2f} | {row['weight_relative_error']:.4f} | "
            f"{row['kv_delta_relative_error']:.4f} | "
            f"{row['kv_relative_error']:.5f} | {row['mean_abs_diff_levels']:.3f} | {row['psnr_db']:.1f} | "
            f"{row['sdxl_bytes_at_max_rank'] / 1e6:.1f} | {row['sdxl_bytes_at_same_fraction'] / 1e6:.1f} |"
        )
    lines += [
        "",
        "'SDXL MB at max rank': the real SDXL artifact with that rank in every layer. 'At same fraction': "
        "each SDXL layer keeping the same share of its full rank as the tiny layers did (low-rank factors "
        "past about half the full rank weigh more than the dense delta).",
    ]
    lines += ["", f"Training {result['train_s']:.0f} s, all {result['total_s']:.0f} s (2 shared CPU cores).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS / "sdxl-compression-cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    result = run(args.steps, args.seeds)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
