"""`python -m training.world train-base --out shared/assets/toyworld [--minutes 40] [--seed 0] [--*-steps N]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.world.base import train_base


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.world")
    commands = parser.add_subparsers(dest="command", required=True)
    # Flags left out take train_base's defaults: they are written down once, in its signature.
    train = commands.add_parser(
        "train-base", help="train the toy-world base model and its evaluator", argument_default=argparse.SUPPRESS
    )
    train.add_argument("--out", type=Path, required=True, help="asset folder (a StableDiffusionPipeline directory)")
    train.add_argument("--minutes", type=float, help="wall-clock cap of all stages together")
    train.add_argument("--seed", type=int)
    train.add_argument("--vae-steps", type=int)
    train.add_argument("--evaluator-steps", type=int)
    train.add_argument("--diffusion-steps", type=int)
    train.add_argument("--scenes", type=int, help="distinct training scenes of the diffusion stage")
    train.add_argument("--pattern-steps", type=int)
    train.add_argument("--pattern-scenes", type=int, help="distinct scenes of stage 4")
    train.add_argument("--pattern-batch", type=int, help="scenes per step of stage 4")
    train.add_argument("--evaluator-images", type=int)
    train.add_argument(
        "--threads", type=int, help="torch threads; 1 is several times faster when others load the cores"
    )
    train.add_argument(
        "--codec-from", type=Path, help="keep this asset's VAE and evaluator; train only the text encoder and UNet"
    )
    train.add_argument(
        "--start-from", type=Path, help="keep this asset whole and continue its text encoder and UNet with stage 4"
    )
    train.add_argument("--device", help="where the text encoder and UNet train: cpu, cuda, cuda:1…")
    train.add_argument("--eval-samples", type=int, help="fixed-seed samples for the prompt-following check")
    train.add_argument("--heldout-images", type=int, help="fresh renders for the evaluator's held-out accuracy")
    options = vars(parser.parse_args(argv))
    del options["command"]
    train_base(**options)


if __name__ == "__main__":
    main()
