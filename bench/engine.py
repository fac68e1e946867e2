"""Engine throughput: base only vs. a batch where every request has its own concept vs. the
naive way (patch each request's weights into the UNet, run requests one by one).

    python -m bench.engine [--model tiny|mid|sd15] [--device cuda] [--dtype fp16]

Prints images/s and the ratios b/a and c/a measured side by side in one run; writes
engine-{model}-{cpu|gpu}-{dtype}[-rank{r}].json to `--out` (default out/bench/, ignored by git):
bench/results keeps none of its output, since its ratios only speak for a GPU, where the GPU check's
serving part measures the same comparison through Ray Serve (bench/README.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from bench.common import SCRATCH, device_name, interleaved_medians, one_request_per_concept, write_result
from serving.engine import DeltaEngine, GenerationRequest
from shared.basemodel import BaseModel, cross_attention_layers, prepare_base_model
from shared.delta import ConceptDelta
from shared.tiny import (
    build_clip_l_text_encoder,
    build_sd15_unet,
    build_sd_vae,
    build_tiny_pipeline,
    sd_scheduler,
    tiny_tokenizer,
)
from tests.support.synthetic import random_concept

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_model(kind: str, device: str, dtype: torch.dtype) -> tuple[BaseModel, int]:
    """The base model and its image size."""
    if kind == "tiny":
        return prepare_base_model(build_tiny_pipeline(), source="tiny", device=device, dtype=dtype), 16
    if kind == "mid":
        pipe = build_tiny_pipeline(text_dim=256, block_out_channels=(128, 256, 256), sample_size=16)
        return prepare_base_model(pipe, source="mid", device=device, dtype=dtype), 32
    tokenizer = tiny_tokenizer()
    tokenizer.model_max_length = 77
    pipe = StableDiffusionPipeline(
        vae=build_sd_vae(),
        text_encoder=build_clip_l_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=build_sd15_unet(),
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return prepare_base_model(pipe, source="sd15-random", device=device, dtype=dtype), 512


def naive_one_by_one(base: BaseModel, requests: list[GenerationRequest], engine: DeltaEngine) -> None:
    """The usual way: write W0 + ΔW into the UNet, generate, restore; one request at a time."""
    layers = cross_attention_layers(base.pipeline.unet)
    for request in requests:
        _add_delta(layers, request.delta, +1)
        try:
            engine.generate([GenerationRequest(**{**request.__dict__, "delta": _tokens_only(request.delta)})])
        finally:
            _add_delta(layers, request.delta, -1)


def _tokens_only(delta: ConceptDelta | None) -> ConceptDelta | None:
    return ConceptDelta(token_embeddings=delta.token_embeddings) if delta else None


@torch.no_grad()
def _add_delta(layers: dict, delta: ConceptDelta | None, sign: int) -> None:
    for name, projections in delta.layers.items() if delta else []:
        for projection, weight in projections.items():
            linear = getattr(layers[name], projection)
            linear.weight.add_(weight.to_dense().to(linear.weight.dtype), alpha=sign)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "mid", "sd15"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    parser.add_argument("--batch", type=int, default=8, help="requests per batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rank", type=int, default=0, help="low-rank concepts of this rank (0: dense)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; a, b and c take turns in each")
    parser.add_argument("--out", type=Path, default=SCRATCH, help="results folder (default out/bench)")
    args = parser.parse_args(argv)

    base, size = build_model(args.model, args.device, DTYPES[args.dtype])
    engine = DeltaEngine(base)
    deltas = [
        random_concept(base.spec, f"c{i}", seed=i, rank=args.rank or None, scale=0.05)[1].to(args.device, base.dtype)
        for i in range(args.batch)
    ]

    def requests(with_concepts: bool) -> list[GenerationRequest]:
        return one_request_per_concept(deltas, with_concepts=with_concepts, steps=args.steps, size=size)

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    seconds = interleaved_medians(
        {
            "base": lambda: engine.generate(requests(False)),
            "mixed": lambda: engine.generate(requests(True)),
            "naive": lambda: naive_one_by_one(base, requests(True), engine),
        },
        args.repeats,
        sync,
    )
    base_s, mixed_s, naive_s = seconds["base"], seconds["mixed"], seconds["naive"]
    images = args.batch
    result = {
        "device": device_name(args.device),
        "model": args.model,
        "dtype": args.dtype,
        "batch_requests": args.batch,
        "steps": args.steps,
        "image_size": size,
        "concept_rank": args.rank or "dense",
        "images_per_s": {
            "a_base": images / base_s,
            "b_mixed_concepts": images / mixed_s,
            "c_naive_patch": images / naive_s,
        },
        "ratio_b_over_a": base_s / mixed_s,
        "ratio_c_over_a": base_s / naive_s,
    }
    for key, value in result["images_per_s"].items():
        print(f"{key:>18}: {value:8.2f} images/s")
    print(f"b/a = {result['ratio_b_over_a']:.3f}   c/a = {result['ratio_c_over_a']:.3f}")
    device = "gpu" if args.device.startswith("cuda") else "cpu"
    rank = f"-rank{args.rank}" if args.rank else ""
    print(f"wrote {write_result(f'engine-{args.model}-{device}-{args.dtype}{rank}', result, folder=args.out)}")
    return result


if __name__ == "__main__":
    main()
