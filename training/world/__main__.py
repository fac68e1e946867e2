"""`python -m training.world train-base --out shared/assets/toyworld [--minutes 40] [--seed 0] [--*-steps N]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.world.base import PATTERN_SCENES, PATTERN_STEPS, VAE_STEPS, train_base


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.world")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train-base", help="train the toy-world base model and its evaluator")
    train.add_argument("--out", type=Path, required=True, help="asset folder (a StableDiffusionPipeline directory)")
    train.add_argument("--minutes", type=float, default=90.0, help="wall-clock cap of all stages together")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--vae-steps", type=int, default=VAE_STEPS)
    train.add_argument("--evaluator-steps", type=int, default=6000)
    train.add_argument("--diffusion-steps", type=int, default=5000)
    train.add_argument("--scenes", type=int, default=16000, help="distinct training scenes of the diffusion stage")
    train.add_argument("--pattern-steps", type=int, default=PATTERN_STEPS)
    train.add_argument("--pattern-scenes", type=int, default=PATTERN_SCENES, help="distinct scenes of stage 4")
    train.add_argument("--pattern-batch", type=int, default=64, help="scenes per step of stage 4")
    train.add_argument("--evaluator-images", type=int, default=10000)
    train.add_argument(
        "--threads", type=int, default=2, help="torch threads; 1 is several times faster when others load the cores"
    )
    train.add_argument(
        "--codec-from", type=Path, help="keep this asset's VAE and evaluator; train only the text encoder and UNet"
    )
    train.add_argument(
        "--start-from", type=Path, help="keep this asset whole and continue its text encoder and UNet with stage 4"
    )
    train.add_argument("--device", default="cpu", help="where the text encoder and UNet train: cpu, cuda, cuda:1…")
    train.add_argument(
        "--eval-samples", type=int, default=128, help="fixed-seed samples for the prompt-following check"
    )
    args = parser.parse_args(argv)
    train_base(
        args.out,
        minutes=args.minutes,
        seed=args.seed,
        vae_steps=args.vae_steps,
        evaluator_steps=args.evaluator_steps,
        diffusion_steps=args.diffusion_steps,
        scenes=args.scenes,
        pattern_steps=args.pattern_steps,
        pattern_scenes=args.pattern_scenes,
        evaluator_images=args.evaluator_images,
        eval_samples=args.eval_samples,
        threads=args.threads,
        codec_from=args.codec_from,
        start_from=args.start_from,
        device=args.device,
        pattern_batch=args.pattern_batch,
    )


if __name__ == "__main__":
    main()
