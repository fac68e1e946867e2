"""`train-base`: train the toy-world base model and its evaluator, and save them as one asset folder.

Stages run fixed step counts (each capped in wall-clock time) and checkpoint under
`<out>/checkpoints/` (removed when done), so rerunning the same command resumes an interrupted run:
  1. CLIP BPE tokenizer on the world's captions      4. text encoder + UNet (diffusion loss), plain
  2. VAE (generic codec, all appearances)               scenes, then patterned ones (`expose_patterns`)
  3. evaluator (on softened renders + VAE round trips)  5. save a stock StableDiffusionPipeline,
                                                         reg captions, evaluator, train_record.json
`--codec-from ASSET` keeps that asset's VAE and evaluator (stages 2–3); `--start-from ASSET` also
keeps its tokenizer, and continues its text encoder and UNet with stage 4 alone. `--device cuda`
trains stage 4's models on a GPU (data and noise are still drawn on the CPU, the same stream).
`train_record.json` records the command, seed, plan, wall time and the checks' figures of the run
that wrote the folder, so it can be rerun and compared.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL

from shared.basemodel import load_base_model
from shared.tokenizer import load_clip_tokenizer, train_clip_tokenizer
from training.world.autoencoder import set_scaling_factor, train_vae
from training.world.captions import generic_captions, training_caption, vocabulary
from training.world.diffusion import patterned_scenes, train_diffusion
from training.world.evaluator import Evaluator
from training.world.evaluator_training import heldout_accuracy, train_evaluator
from training.world.models import MAX_TOKENS, build_pipeline
from training.world.prompting import GUIDANCE, SAMPLE_STEPS, prompt_following

REG_CAPTIONS = "reg_captions.txt"
VAE_STEPS = 5000
PATTERN_STEPS = 11000
PATTERN_SCENES = 36000
PATTERN_LR = 2e-4
N_REG_CAPTIONS = 1000
RECORD = "train_record.json"


def expose_patterns(
    work: Path,
    vae,
    tokenizer,
    start: tuple,
    seed: int,
    steps: int = PATTERN_STEPS,
    scenes: int = PATTERN_SCENES,
    *,
    device: str = "cpu",
    batch: int = 64,
    budget_s: float = float("inf"),
) -> tuple:
    """Stage 4: continue the diffusion training on scenes with patterned objects, captioned with pattern
    words ("a green and red twotone circle"), never in a concept's own appearance: the base model can
    then draw what a concept is made of, as SD can draw dogs, but not the particular one."""
    return train_diffusion(
        work,
        vae,
        tokenizer,
        seed + 1,
        budget_s=budget_s,
        max_steps=steps,
        n_scenes=scenes,
        batch=batch,
        lr=PATTERN_LR,
        stage="patterns",
        scenes_fn=patterned_scenes,
        start=start,
        device=device,
    )


@dataclass(frozen=True)
class Plan:
    """Steps per stage, each capped by a share of the wall-clock budget `minutes`. The step counts fix
    the quality; the caps keep a run on a loaded machine from overrunning (it then trains less)."""

    vae_steps: int
    evaluator_steps: int
    diffusion_steps: int
    vae_s: float
    evaluator_s: float
    diffusion_s: float

    @classmethod
    def make(cls, minutes: float, vae_steps: int, evaluator_steps: int, diffusion_steps: int) -> Plan:
        budget = minutes * 60
        return cls(vae_steps, evaluator_steps, diffusion_steps, budget * 0.27, budget * 0.1, budget * 0.55)


def _tokenizer(work: Path, seed: int):
    """Train once and keep the files: BPE ids differ between training runs."""
    tok_dir = work / "tokenizer"
    if (tok_dir / "vocab.json").exists():
        return load_clip_tokenizer(tok_dir, model_max_length=MAX_TOKENS)
    rng = np.random.default_rng([seed, 0x70C])
    patterned = [training_caption(scene, rng) for scene in patterned_scenes(seed, 2000)]
    # Every caption word must be frequent in the corpus: the rarest (highest-id) words are what
    # modifier tokens start from (training.tokens), and those should carry little meaning.
    corpus = generic_captions(5000, seed) + patterned + vocabulary()
    return train_clip_tokenizer(corpus, tok_dir, vocab_size=1000, model_max_length=MAX_TOKENS)


def _train_codec(
    work: Path, seed: int, plan: Plan, evaluator_images: int, heldout_images: int
) -> tuple[AutoencoderKL, Evaluator, dict]:
    """Stages 2–3: the VAE, then the evaluator (trained on its round trips)."""
    vae, vae_result = train_vae(work, seed, plan.vae_s, plan.vae_steps)
    scaling = set_scaling_factor(vae, seed)
    print(f"[vae] scaling_factor {scaling:.4f}", flush=True)
    evaluator, evaluator_result = train_evaluator(
        work, vae, seed, plan.evaluator_s, plan.evaluator_steps, n_train=evaluator_images
    )
    accuracy = heldout_accuracy(evaluator, vae, seed + 1, n=heldout_images)
    evaluator.config["heldout_accuracy"] = accuracy
    print(f"[evaluator] held-out accuracy {json.dumps(accuracy)}", flush=True)
    return (
        vae,
        evaluator,
        {
            "vae": {"steps": vae_result.steps, "loss": vae_result.last_loss, "scaling_factor": scaling},
            "evaluator": {
                "steps": evaluator_result.steps,
                "images": evaluator_images,
                "heldout_images": heldout_images,
                "heldout_accuracy": accuracy,
            },
        },
    )


def _load_codec(asset: Path) -> tuple[AutoencoderKL, Evaluator, dict]:
    vae = AutoencoderKL.from_pretrained(asset / "vae").eval().requires_grad_(False)
    evaluator = Evaluator.load(asset)
    print(f"[codec] VAE and evaluator from {asset}", flush=True)
    return (
        vae,
        evaluator,
        {
            "vae": {"from": str(asset), "scaling_factor": float(vae.config.scaling_factor)},
            "evaluator": {"from": str(asset), "heldout_accuracy": evaluator.config.get("heldout_accuracy")},
        },
    )


def train_base(
    out: Path,
    *,
    minutes: float = 90.0,
    seed: int = 0,
    vae_steps: int = VAE_STEPS,
    evaluator_steps: int = 6000,
    diffusion_steps: int = 5000,
    pattern_steps: int = PATTERN_STEPS,
    scenes: int = 16000,
    pattern_scenes: int = PATTERN_SCENES,
    evaluator_images: int = 10000,
    heldout_images: int = 1000,
    eval_samples: int = 128,
    threads: int = 2,
    codec_from: Path | None = None,
    start_from: Path | None = None,
    device: str = "cpu",
    pattern_batch: int = 64,
) -> dict:
    """`codec_from`: an asset folder whose VAE and evaluator to keep (stages 2–3 skipped), for retraining
    the text encoder and UNet alone, e.g. after changing their architecture. `start_from`: an asset
    whose codec, tokenizer, text encoder and UNet to keep, continued by `pattern_steps` more of stage 4
    (stage 1 and the plain scenes skipped too): more training without redoing what a run already did.
    Only then does `minutes` cap stage 4 as well (a from-scratch run's stage 4 runs all its steps).
    `heldout_images` and `eval_samples` size the checks whose figures the record keeps (fresh renders
    the evaluator reads, prompts the model draws): they measure the run and change nothing it trains."""
    torch.set_num_threads(threads)
    started = time.monotonic()
    plan = Plan.make(minutes, vae_steps, evaluator_steps, diffusion_steps)
    work = out / "checkpoints"
    work.mkdir(parents=True, exist_ok=True)
    print(f"[train-base] out={out} seed={seed} plan={plan}", flush=True)

    if start_from is not None:
        if codec_from is not None:
            raise ValueError("start_from keeps that asset's codec too: give it or codec_from, not both")
        codec_from = start_from
        started_from = load_base_model(start_from).pipeline
        tokenizer = started_from.tokenizer  # its text encoder's embedding rows are this tokenizer's ids
        print(f"[start] tokenizer, text encoder and UNet from {start_from}", flush=True)
    else:
        tokenizer = _tokenizer(work, seed)
    if codec_from is None:
        vae, evaluator, codec_report = _train_codec(work, seed, plan, evaluator_images, heldout_images)
    else:
        vae, evaluator, codec_report = _load_codec(codec_from)

    if start_from is None:
        text_encoder, unet, diffusion_result = train_diffusion(
            work, vae, tokenizer, seed, plan.diffusion_s, plan.diffusion_steps, n_scenes=scenes, device=device
        )
        diffusion_report: dict[str, Any] = {
            "steps": diffusion_result.steps,
            "loss": diffusion_result.last_loss,
            "scenes": scenes,
        }
    else:
        text_encoder, unet = started_from.text_encoder, started_from.unet
        diffusion_report = {"from": str(start_from)}
    pattern_budget_s = float("inf") if start_from is None else minutes * 60 - (time.monotonic() - started)
    text_encoder, unet, pattern_result = expose_patterns(
        work,
        vae,
        tokenizer,
        (text_encoder, unet),
        seed,
        pattern_steps,
        pattern_scenes,
        device=device,
        batch=pattern_batch,
        budget_s=pattern_budget_s,
    )
    pipe = build_pipeline(vae, text_encoder, tokenizer, unet)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(out, safe_serialization=True)
    evaluator.save(out)
    (out / REG_CAPTIONS).write_text("\n".join(generic_captions(N_REG_CAPTIONS, seed)) + "\n")

    following = {
        "one_object": prompt_following(pipe, evaluator, eval_samples, seed=1000),
        "two_objects": prompt_following(pipe, evaluator, eval_samples // 2, seed=2000, two_object_prob=1.0),
    }
    print(f"[base] prompt following {json.dumps(following)}", flush=True)
    report = {
        "command": " ".join(["python -m training.world", *sys.argv[1:]]),
        "seed": seed,
        "minutes": minutes,
        "plan_s": asdict(plan),
        "wall_s": round(time.monotonic() - started, 1),
        **codec_report,
        "diffusion": diffusion_report,
        "patterns": {
            "steps": pattern_result.steps,
            "loss": pattern_result.last_loss,
            "scenes": pattern_scenes,
            "batch": pattern_batch,
        },
        "prompt_following": following,
        "sampling": {"scheduler": "DDIM", "steps": SAMPLE_STEPS, "guidance": GUIDANCE},
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
    }
    (out / RECORD).write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work)
    print(f"[train-base] done in {report['wall_s']:.0f} s", flush=True)
    return report
