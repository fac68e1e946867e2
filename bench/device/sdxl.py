"""SDXL on the GPU as the engine serves it: the SDXL base architecture with random weights, 1024²,
20 steps, fp16. The last part of the GPU check (`python -m bench.device.check`), runnable alone:

    python -m bench.device.sdxl --out OUT [--seconds 150]    # default: until the check's deadline for it
    python -m bench.device.sdxl --out OUT --dry-run          # the tiny SDXL on this CPU

Stages, most wanted first; each is written to OUT/sdxl.json as soon as it is measured, so a run cut
short keeps what it had, and a stage that would start too close to the end of its time is reported
as skipped:

1. throughput: images/s of a batch without concepts (a) and of the same batch with a distinct
   compressed concept per request (b: every layer at SDXL's default rank cap, the largest a
   default artifact gets), the two taking turns; peak device memory;
2. what such a concept costs before its first step: disk → host (artifact load, checked against the
   base), host → device, and the K/V set-up of one request with it against one without;
3. the SDXL engine tests on the device (`tests/sdxl/test_engine.py`: equal to stock
   `StableDiffusionXLPipeline` with each concept patched in) → OUT/sdxl.xml, OUT/sdxl-tests.log;
4. a two-concept closed-form merge at 2048-d on the serving base: C_regᵀC_reg over the generic
   captions (what a replica builds at start), then the merge;
5. training (mode kv, with regularisation images, at the base's resolution) for up to 250 steps or
   as many as the time left allows, the time for 250 projected from the steps run; peak memory.

The text encoders have SDXL's widths and depths (CLIP ViT-L: 768-d, 12 layers; OpenCLIP ViT-bigG:
1280-d, 32 layers, projection 1280) over the project's tiny tokenizer with 77 positions: the
vocabulary only sizes one embedding table. The VAE is SDXL's (the SD VAE architecture; the engine
decodes in fp32, as stock diffusers does with SDXL's VAE). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionXLPipeline
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from bench.common import device_name, one_request_per_concept
from bench.device.check import PART_DEADLINE, PYTEST, Part, junit, run_part
from bench.training import peak_memory_mb, synthetic_config
from serving.engine import DeltaEngine, GenerationRequest, create_engine
from serving.engine.conditioning import RowLayout, build_conditioning
from shared import artifact
from shared.artifact import ArtifactHeader
from shared.basemodel import BaseModel, prepare_base_model
from shared.delta import ConceptDelta
from shared.merge import closed_form_merge, load_captions, regularization_stats
from shared.tiny import TINY_TOKENIZER_DIR, build_clip_l_text_encoder, build_sd_vae
from shared.tokenizer import load_clip_tokenizer
from tests.support.synthetic import random_concept
from tests.support.tiny_sdxl import build_sdxl_unet_random, build_tiny_sdxl_pipeline, sdxl_scheduler
from training.config import TrainConfig
from training.loop import build_trainer
from training.output import SDXL_MAX_RANK

TRAIN_STEPS = 250
"""The paper's steps for one concept."""
TARGET_RATIO = 0.97
"""Images/s with a distinct concept per request, as a share of images/s without concepts."""
STAGE_SECONDS = {"concept_costs": 10, "engine_tests": 30, "merge": 30, "training": 45}
"""Rough least time a stage needs on the GPU (models built, data made, a few steps): one that would
start with less left is skipped rather than cut off with nothing to show."""
FINAL_S = 10
"""Kept free at the end of the part for writing the result."""
OPENCLIP_BIGG = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20)
"""SDXL's second text encoder, OpenCLIP ViT-bigG/14's text transformer (GELU, projected to 1280-d)."""


def build_sdxl(device: str, dtype: torch.dtype, seed: int = 0) -> BaseModel:
    """The SDXL base architecture with random weights, built on `device` (module docstring)."""
    tokenizer, tokenizer_2 = (load_clip_tokenizer(TINY_TOKENIZER_DIR, model_max_length=77) for _ in range(2))
    with torch.device(device):
        torch.manual_seed(seed)
        text_encoder = build_clip_l_text_encoder(tokenizer, seed=seed)
        special = {f"{kind}_token_id": getattr(tokenizer_2, f"{kind}_token_id") for kind in ("bos", "eos", "pad")}
        shape = {**OPENCLIP_BIGG, "projection_dim": 1280, "hidden_act": "gelu", "max_position_embeddings": 77}
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=len(tokenizer_2), **shape, **special))
        vae = build_sd_vae(scaling_factor=0.13025)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=build_sdxl_unet_random(seed, device=device),
        scheduler=sdxl_scheduler(),
        add_watermarker=False,
    )
    return prepare_base_model(pipe, source="sdxl-random", device=device, dtype=dtype)


class Stages:
    """Runs stages in order within one deadline; records each one's result, error or skip, and
    writes them all to OUT/sdxl.json after every stage."""

    def __init__(self, out: Path, seconds: float, result: dict[str, Any], *, enforce: bool) -> None:
        self.path = out / "sdxl.json"
        self.deadline = time.perf_counter() + seconds - FINAL_S
        """On the `time.perf_counter` clock."""
        self.result = result
        self.enforce = enforce
        self.failed = False
        self.save()

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self, name: str, stage: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        needs = STAGE_SECONDS.get(name, 0) if self.enforce else 0
        if self.left() < needs:
            self.result[name] = {"skipped": f"{self.left():.0f} s left, it needs about {needs} s"}
            self.save()
            return None
        started = time.perf_counter()
        try:
            value = stage()
        except Exception as e:  # noqa: BLE001 - a failed stage is reported, and the stages after it still run
            value = {"error": f"{type(e).__name__}: {e}"[:2000], "traceback": traceback.format_exc().splitlines()[-8:]}
            self.failed = True
        value["stage_s"] = round(time.perf_counter() - started, 1)
        self.result[name] = value
        self.save()
        print(f"sdxl {name}: {json.dumps(value)[:400]}", flush=True)
        return value

    def save(self) -> None:
        self.path.write_text(json.dumps(self.result, indent=2) + "\n")


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - started


def median_ms(fn: Callable[[], object], sync: Callable[[], None], repeats: int) -> float:
    fn()
    sync()
    return round(1000 * statistics.median(timed(fn, sync) for _ in range(repeats)), 3)


def throughput(
    engine: DeltaEngine, deltas: Sequence[ConceptDelta], args: argparse.Namespace, until: tuple[float, float]
) -> dict[str, Any]:
    """Batches without (a) and with (b) a distinct concept per request, taking turns after one
    untimed batch each: as many rounds as `args.repeats`, fewer when the next would end past `until`
    (one time for the first round, an earlier one for the others)."""
    sync = synchronizer(args.device)

    def batch(with_concepts: bool) -> list[GenerationRequest]:
        return one_request_per_concept(deltas, with_concepts=with_concepts, steps=args.steps, size=args.size)

    names = ("a_base", "b_concepts")
    runs: list[dict[str, tuple[float, float]]] = []
    """Per round, each batch's (seconds, the engine's encode_ms: text encoders and K/V set-up); the
    first round is the untimed one."""

    def run(name: str) -> tuple[float, float]:
        started = time.perf_counter()
        results = engine.generate(batch(name == "b_concepts"))
        sync()
        return time.perf_counter() - started, results[0].timings_ms["encode_ms"]

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    while len(runs) < 1 + args.repeats:
        round_s = sum(seconds for seconds, _ in runs[-1].values()) if runs else 0.0
        if runs and time.perf_counter() + round_s > until[min(len(runs) - 1, 1)]:
            break
        runs.append({name: run(name) for name in names})
    timed_rounds = len(runs) - 1
    kept = runs[1:] or runs  # with no time for a timed round, the untimed one is all there is
    seconds = {name: [r[name][0] for r in kept] for name in names}
    images_per_s = {name: args.batch / statistics.median(values) for name, values in seconds.items()}
    return {
        "batch_requests": args.batch,
        "image_size": args.size,
        "steps": args.steps,
        "concept_rank": args.rank,
        "rounds": timed_rounds,
        "warmup_s": {name: round(runs[0][name][0], 2) for name in names},
        "seconds_per_batch": {name: [round(s, 3) for s in values] for name, values in seconds.items()},
        "images_per_s": {name: round(value, 4) for name, value in images_per_s.items()},
        "ratio_b_over_a": round(images_per_s["b_concepts"] / images_per_s["a_base"], 4),
        "target_b_over_a": TARGET_RATIO,
        "encode_ms_median": {name: round(statistics.median(r[name][1] for r in kept), 2) for name in names},
        "peak_memory_gib": round(peak_memory_mb(torch.device(args.device)) / 1024, 2),
    }


def concept_costs(
    engine: DeltaEngine, base: BaseModel, concept: tuple[ArtifactHeader, ConceptDelta], folder: Path, *, repeats: int
) -> dict[str, Any]:
    """One compressed concept from its file to its keys and values on the device."""
    sync = synchronizer(str(base.device))
    header, delta = concept
    path = artifact.save(header, delta, folder / f"{header.concept_id}.safetensors")
    loaded = artifact.load(path, base=base.spec).delta
    token = next(iter(delta.token_embeddings))
    prompts = engine.prompts
    on_device = loaded.to(base.device, base.dtype)
    features = prompts.encode(
        [prompts.tokenize("", [token]), prompts.tokenize(f"a photo of a {token} dog", [token])],
        on_device.token_embeddings,
    ).to(base.dtype)

    def kv(delta: ConceptDelta | None) -> Callable[[], object]:
        return lambda: build_conditioning(engine.layers, features, [delta], RowLayout([1]))

    kv_base, kv_concept = median_ms(kv(None), sync, repeats), median_ms(kv(on_device), sync, repeats)
    return {
        "file_mb": round(path.stat().st_size / 1e6, 2),
        "rank": loaded.max_rank,
        "disk_to_host_ms": median_ms(lambda: artifact.load(path, base=base.spec), sync, repeats),
        "host_to_device_ms": median_ms(lambda: loaded.to(base.device, base.dtype), sync, repeats),
        "kv_setup_ms": {"without_concept": kv_base, "with_concept": kv_concept},
        "kv_setup_concept_extra_ms": round(kv_concept - kv_base, 3),
    }


def engine_tests(out: Path, device: str, timeout_s: float) -> dict[str, Any]:
    """tests/sdxl/test_engine.py on the device, every test run even after a failure."""
    command = [*PYTEST, f"--junitxml={out}/sdxl.xml", "tests/sdxl/test_engine.py"]
    tests = Part("sdxl-tests", command, 1.0, {"CDSERVE_TEST_DEVICE": device})
    result = run_part(tests, out, timeout_s, own_session=False)
    kept = ("rc", "ok", "seconds", "limit_s") if result["ok"] else tuple(result)
    return {**{key: result[key] for key in kept}, "tests": junit(out / "sdxl.xml") or None}


def merge_cost(engine: DeltaEngine, concepts: Sequence[tuple[ArtifactHeader, ConceptDelta]]) -> dict[str, Any]:
    """C_regᵀC_reg built once, then the closed-form merge of two concepts, on the host in fp64 as served."""
    captions = load_captions()
    started = time.perf_counter()
    stats = regularization_stats(engine.prompts, captions)
    creg_s = time.perf_counter() - started
    started = time.perf_counter()
    merged, report = closed_form_merge(concepts, engine.prompts, engine.layers, stats)
    return {
        "captions": len(captions),
        "creg_s": round(creg_s, 3),
        "merge_s": round(time.perf_counter() - started, 3),
        "merged_rank": report.rank,
        "merged_mb": round(merged.nbytes / 1e6, 2),
        "max_constraint_residual": report.max_constraint_residual,
    }


def training(args: argparse.Namespace, folder: Path, until: float) -> dict[str, Any]:
    """Steps of the Custom Diffusion recipe on a fresh fp32 base (as a training job loads it; autocast
    computes), with regularisation images and, if the device runs out of memory, without."""
    base = build_base(args, torch.float32)
    size = base.pipeline.unet.config.sample_size * base.pipeline.vae_scale_factor
    attempts: list[dict[str, Any]] = []
    for regularization in (True, False):
        config = synthetic_config(
            folder / f"regularization-{regularization}",
            size,
            base.source,
            regularization=regularization,
            steps=args.train_steps,
            batch_size=args.train_batch,
            use_gpu=base.device.type == "cuda",
        )
        try:
            return {"regularization": regularization, **train_steps(config, base, until), "earlier_attempts": attempts}
        except torch.OutOfMemoryError as e:
            attempts.append({"regularization": regularization, "out_of_memory": str(e)[:300]})
        gc.collect()
        torch.cuda.empty_cache()
    raise RuntimeError(f"out of device memory with and without regularisation images: {attempts}")


def train_steps(config: TrainConfig, base: BaseModel, until: float) -> dict[str, Any]:
    """Up to the recipe's steps, fewer when the next would end past `until`; the time for the paper's
    steps is measured when they all ran, else projected from the steps after the first two."""
    device = base.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = build_trainer(config, base)
    sync = synchronizer(str(device))
    steps = config.recipe.total_steps(len(config.concepts))
    seconds: list[float] = []
    while len(seconds) < steps and (not seconds or time.perf_counter() + seconds[-1] < until):
        seconds.append(timed(trainer.train_step, sync))
    per_step = statistics.mean(seconds[2:] or seconds)
    missing = max(TRAIN_STEPS - len(seconds), 0)
    return {
        "resolution": trainer.source.resolution,
        "precision": config.recipe.mixed_precision if device.type == "cuda" else "fp32",
        "mode": config.recipe.mode,
        "batch_targets": config.recipe.batch_size,
        "trainable_parameters": sum(p.numel() for p in trainer.trainable.values()),
        "steps_run": len(seconds),
        "first_step_s": round(seconds[0], 3),
        "seconds_run": round(sum(seconds), 1),
        "seconds_per_step": round(per_step, 4),
        f"seconds_for_{TRAIN_STEPS}_steps": round(sum(seconds[:TRAIN_STEPS]) + per_step * missing, 1),
        f"{TRAIN_STEPS}_steps": "projected" if missing else "measured",
        "peak_memory_gib": round(peak_memory_mb(device) / 1024, 2),
        "final_loss": trainer.losses[-1],
    }


def build_base(args: argparse.Namespace, dtype: torch.dtype) -> BaseModel:
    if args.dry_run:
        return prepare_base_model(build_tiny_sdxl_pipeline(seed=0), source="tiny-sdxl", device=args.device, dtype=dtype)
    return build_sdxl(args.device, dtype)


def synchronizer(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def serving_stages(args: argparse.Namespace, stages: Stages, folder: Path) -> None:
    """Everything on the serving base (fp16 on a GPU); it is freed when this returns."""
    built: dict[str, Any] = {}

    def build() -> dict[str, Any]:
        base = build_base(args, torch.float16 if args.device.startswith("cuda") else torch.float32)
        concepts = [
            random_concept(base.spec, f"c{i}", seed=i, rank=args.rank, scale=0.05, dtype=torch.float16)
            for i in range(args.batch)
        ]
        built.update(base=base, engine=create_engine(base), concepts=concepts)
        built["on_device"] = [delta.to(base.device, base.dtype) for _, delta in concepts]
        pipe = base.pipeline
        return {
            "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
            "text_encoder_parameters": [
                sum(p.numel() for p in e.parameters()) for e in (pipe.text_encoder, pipe.text_encoder_2)
            ],
            "cross_attention_layers": len(base.spec.layers),
            "feature_dim": base.spec.token_dim,
            "dtype": str(base.dtype).removeprefix("torch."),
        }

    stages.run("model", build)
    if "on_device" not in built:
        return
    base, engine, concepts = built["base"], built["engine"], built["concepts"]
    rest = sum(STAGE_SECONDS.values()) if stages.enforce else 0
    until = (stages.deadline, stages.deadline - rest)
    stages.run("throughput", lambda: throughput(engine, built["on_device"], args, until))
    stages.run("concept_costs", lambda: concept_costs(engine, base, concepts[0], folder, repeats=5))
    stages.run("engine_tests", lambda: engine_tests(stages.path.parent, args.device, min(stages.left(), 90)))
    stages.run("merge", lambda: merge_cost(engine, concepts[:2]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, help="time for all stages (default: the check's deadline, else 600)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4, help="requests per batch, each with its own concept in (b)")
    parser.add_argument("--rank", type=int, default=SDXL_MAX_RANK, help="every layer's rank in the concepts")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (a, b) at most")
    parser.add_argument("--train-steps", type=int, default=TRAIN_STEPS, help="at most")
    parser.add_argument("--train-batch", type=int, default=1, help="target images per step (as many reg images)")
    parser.add_argument("--dry-run", action="store_true", help="the tiny SDXL on this CPU, a few steps of each")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.size, args.steps, args.batch, args.rank, args.repeats, args.train_steps = (
            "cpu",
            16,
            2,
            2,
            2,
            1,
            3,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "device": device_name(args.device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "model": "tiny-sdxl" if args.dry_run else "sdxl-random",
    }
    deadline = os.environ.get(PART_DEADLINE)
    seconds = args.seconds or (float(deadline) - time.time() if deadline else 600.0)
    result["seconds_limit"] = round(seconds)
    stages = Stages(args.out, seconds, result, enforce=not args.dry_run)
    with tempfile.TemporaryDirectory() as tmp:
        serving_stages(args, stages, Path(tmp))
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        stages.run("training", lambda: training(args, Path(tmp), stages.deadline))
    if stages.failed:
        raise SystemExit(f"a stage failed: see {stages.path}")
    return result


if __name__ == "__main__":
    main()
