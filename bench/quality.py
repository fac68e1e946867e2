"""Concept quality on the toy world, measured by the project's evaluator (the CLIP stand-in).

    python -m bench.quality [--samples 64] [--steps 400] [--stand-in 0] [--concept-second random] [--quick]

Rows (paper, Table 1/2 and §5): the base model, without and with the concept's appearance spelled
out in words (the ceiling a modifier token can reach); Custom Diffusion (K/V + token, real regularisation
images) with the world's recipe (training/world/recipe.py); with the paper's augmentation; the
paper's recipe unchanged; without regularisation; token only (textual inversion); fine-tuning the
whole UNet; two concepts trained jointly; their closed-form merge; the naive sum of their deltas; the
single concept compressed to several ranks. Columns: concept fidelity (image alignment) and
prompt fidelity (text alignment) on held-out prompts in unseen contexts, drift on class prompts
without the modifier token, and for two concepts the share of samples that show both.
Writes bench/results/quality.json and bench/results/quality.md; with `--stand-in P` every run trains
on stand-in wordings with probability P (Recipe.stand_in_probability; the world recipe's 0.5 by
default), written to quality-stand-in-P.*; with `--concept-second K` the targets name each concept
second in K of their images with a companion (the world's TARGET_CONCEPT_SECOND by default), written
to quality-concept-second-K.*, or with `random` on random sides, quality-random-sides.*. Only the
default run's files are kept in bench/results (docs/quality.md reads them).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file

from bench.common import write_result
from serving.engine import DeltaEngine, GenerationRequest
from shared import artifact
from shared.basemodel import BaseModel, cross_attention_layers, load_base_model, reg_captions_path
from shared.compress import compress
from shared.delta import ConceptDelta
from shared.merge import (
    MergeInput,
    MergeReport,
    RegularizationStats,
    closed_form_merge,
    load_captions,
    naive_sum,
    regularization_stats,
)
from training.config import ConceptConfig, TrainConfig
from training.loop import train
from training.regularization import captioned_images, write_captioned_folder
from training.world.captions import appearance_words
from training.world.concepts import (
    CONCEPTS,
    TARGET_COMPANIONS,
    TARGET_CONCEPT_SECOND,
    TARGET_WORDINGS,
    Concept,
    class_prompts,
    concept_prompts,
    render_concept_targets,
    render_reg_pool,
)
from training.world.evaluator import Evaluator, SceneReading
from training.world.metrics import composition, concept_fidelity, drift, prompt_fidelity
from training.world.prompting import GUIDANCE, SAMPLE_STEPS
from training.world.recipe import WORLD_RECIPE, world_recipe

TOYWORLD = Path(__file__).resolve().parent.parent / "shared" / "assets" / "toyworld"
STAND_IN_PROBABILITY = float(WORLD_RECIPE["stand_in_probability"])
FIRST, SECOND = CONCEPTS["twotone-star"], CONCEPTS["outlined-triangle"]
"""Two catalogue concepts of different families and categories, so they compose in one prompt; both
survive the VAE alone and in pairs (they read back right after a VAE round trip). Of the
catalogue's ten pairs it is the one the merge draws best (`bench.pairs --concepts all`)."""


def token_of(concept: Concept) -> str:
    return f"<cd-{concept.name}>"


def in_words(concept: Concept) -> str:
    """The concept's appearance as the base model's own words ("green and red twotone"): what a
    modifier token can at best stand for, so the base model's fidelity with them is the ceiling."""
    return " ".join(appearance_words(concept.appearance))


@dataclass
class Subject:
    """What one row samples with: a base (possibly a fine-tuned copy) and a delta."""

    engine: DeltaEngine
    delta: ConceptDelta | None


@dataclass(frozen=True)
class TargetSet:
    """How each concept's target images are drawn (`render_concept_targets`): the world's defaults."""

    seed: int = 1
    images: int = 8
    companions: int = TARGET_COMPANIONS
    wordings: int = TARGET_WORDINGS
    concept_second: int | None = TARGET_CONCEPT_SECOND
    """None: each companion on a random side."""


class Bench:
    """The base model with its evaluator, and a work folder: trains concepts on a target set and measures them."""

    def __init__(
        self,
        model_dir: Path,
        work: Path,
        samples: int,
        steps: int,
        *,
        targets: TargetSet = TargetSet(),
        run_seed: int = 0,
        stand_in: float = STAND_IN_PROBABILITY,
    ) -> None:
        self.model_dir, self.work, self.samples, self.steps = model_dir, work, samples, steps
        self.targets = targets
        self.run_seed = run_seed  # the recipe's (batches, noise, timesteps)
        self.stand_in = stand_in  # Recipe.stand_in_probability; above 0 the targets get stand-in wordings
        self.base = load_base_model(model_dir)
        self.engine = DeltaEngine(self.base)
        self.evaluator = Evaluator.load(model_dir)
        captions = reg_captions_path(model_dir)  # generic ones if the base ships none
        self.merge_regularization: RegularizationStats = regularization_stats(
            self.engine.prompts, load_captions(captions) if captions else load_captions()
        )
        self.train_seconds: dict[str, float] = {}

    def for_targets(self, seed: int, work: Path, *, run_seed: int = 0) -> Bench:
        """This bench on another target set, its runs seeded by `run_seed`: the base, engine,
        evaluator and merge statistics are shared (each is the base model's alone, and costly to
        build), the training data and runs not."""
        other = copy.copy(self)
        other.targets, other.run_seed = replace(self.targets, seed=seed), run_seed
        other.work, other.train_seconds = work, {}
        return other

    # -- data and training -----------------------------------------------------------------------

    def concept_config(self, concept: Concept, *, reg: str = "real") -> ConceptConfig:
        folder = self.work / "data" / concept.name
        if not folder.exists():
            targets = render_concept_targets(
                concept,
                n=self.targets.images,
                seed=self.targets.seed,
                modifier=token_of(concept),
                companions=self.targets.companions,
                wordings=self.targets.wordings,
                stand_ins=self.stand_in > 0,
                concept_second=self.targets.concept_second,
            )
            write_captioned_folder(folder / "targets", targets)
            write_captioned_folder(folder / "reg", render_reg_pool(concept.category, k=200, seed=2))
        captioned = captioned_images(folder / "targets")
        return ConceptConfig(
            concept_id=concept.name,
            category=concept.category,
            modifier_token=token_of(concept),
            images=[str(path) for path, _ in captioned],
            captions=[wordings for _, wordings in captioned],
            regularization=reg,
            reg_dir=str(folder / "reg") if reg == "real" else None,
        )

    def train(self, name: str, concepts: Sequence[ConceptConfig], **recipe: object) -> Path:
        steps = self.steps * (2 if len(concepts) > 1 else 1)
        settings = {
            "steps": steps,
            "checkpoint_every": 10**5,
            "seed": self.run_seed,
            "stand_in_probability": self.stand_in,
            **recipe,
        }
        config = TrainConfig(
            base_model=str(self.model_dir),
            concepts=list(concepts),
            output_dir=str(self.work / "runs" / name),
            recipe=world_recipe(**settings),
            bundle_id=name,
        )
        started = time.perf_counter()
        path = train(config, base=self.base, show_bar=False).path
        self.train_seconds[name] = round(time.perf_counter() - started, 1)
        print(f"trained {name} in {self.train_seconds[name]} s", flush=True)
        return path

    def load(self, path: Path) -> MergeInput:
        concept = artifact.load(path, base=self.base.spec)
        return concept.header, concept.delta

    def merge(self, concepts: Sequence[MergeInput]) -> tuple[ConceptDelta, MergeReport]:
        """The closed-form merge, regularised with the base model's own captions."""
        layers = cross_attention_layers(self.base.pipeline.unet)
        return closed_form_merge(list(concepts), self.engine.prompts, layers, self.merge_regularization)

    def fine_tuned_whole(self, path: Path) -> Subject:
        """Mode `full` writes UNet weights, not a delta: sample from a copy of the base with them loaded."""
        tensors = load_file(str(path))
        pipeline = copy.deepcopy(self.base.pipeline)
        unet_state = {k.removeprefix("unet."): v for k, v in tensors.items() if k.startswith("unet.")}
        missing, unexpected = pipeline.unet.load_state_dict(unet_state, strict=False)
        if unexpected or len(missing) == len(pipeline.unet.state_dict()):
            raise ValueError(f"{path.name}: UNet weights do not match the base ({unexpected[:3]})")
        tokens = {k.removeprefix("token."): v for k, v in tensors.items() if k.startswith("token.")}
        engine = DeltaEngine(BaseModel(pipeline=pipeline, spec=self.base.spec, source="fine-tuned"))
        return Subject(engine, ConceptDelta(token_embeddings=tokens))

    # -- measuring -------------------------------------------------------------------------------

    def sample(self, subject: Subject, prompts: Sequence[str], seed: int) -> list[Image.Image]:
        requests = [
            GenerationRequest(
                prompt,
                delta=subject.delta,
                steps=SAMPLE_STEPS,
                guidance_scale=GUIDANCE,
                seed=seed + i,
                height=subject.engine.default_size,
                width=subject.engine.default_size,
            )
            for i, prompt in enumerate(prompts)
        ]
        images = []
        for start in range(0, len(requests), 32):
            for result in subject.engine.generate(requests[start : start + 32]):
                images.append(Image.fromarray((result.images[0] * 255).round().astype("uint8")))
        return images

    def read(self, subject: Subject, prompts: Sequence[str], seed: int) -> list[SceneReading]:
        """The evaluator's readings of one sample per prompt (prompt i at seed `seed + i`)."""
        return self.evaluator.read(self.sample(subject, prompts, seed))

    def in_context(self, subject: Subject, concept: Concept, name: str) -> dict[str, float]:
        """Concept and prompt fidelity on held-out prompts in unseen contexts, the concept named by
        `name` (its token, its appearance in words, or "" for nothing)."""
        prompts = concept_prompts((concept,), (name,), n=self.samples, seed=7)
        texts = [" ".join(p.split()) for p, _ in prompts]
        readings = self.read(subject, texts, seed=1000)
        return {
            "concept_fidelity": concept_fidelity(readings, concept),
            "prompt_fidelity": prompt_fidelity(readings, [e for _, e in prompts]),
        }

    def single(self, subject: Subject, concept: Concept, *, name: str | None = None) -> dict[str, float]:
        """`in_context` (named by its token by default), and drift on class prompts without the token."""
        fidelity = self.in_context(subject, concept, token_of(concept) if name is None else name)
        class_set = class_prompts(concept.category, n=self.samples, seed=8)
        class_readings = self.read(subject, [p for p, _ in class_set], seed=2000)
        return {**fidelity, "drift": drift(class_readings, concept)}

    def pair(
        self,
        subject: Subject,
        concepts: tuple[Concept, Concept] = (FIRST, SECOND),
        names: tuple[str, str] | None = None,
        *,
        alone: bool = True,
    ) -> dict[str, float]:
        """Both concepts in one prompt, named in the order given (a pair's figures depend on it: the
        concept named second is drawn less often); with `alone`, also each alone under the same subject."""
        names = names or (token_of(concepts[0]), token_of(concepts[1]))
        prompts = concept_prompts(concepts, names, n=self.samples, seed=9)
        readings = self.read(subject, [p for p, _ in prompts], seed=3000)
        each = (
            {
                f"alone_{concept.name}": self.in_context(subject, concept, name)["concept_fidelity"]
                for concept, name in zip(concepts, names, strict=False)
            }
            if alone
            else {}
        )
        return {
            "both_present": composition(readings, concepts),
            **{f"fidelity_{concept.name}": concept_fidelity(readings, concept) for concept in concepts},
            "prompt_fidelity": prompt_fidelity(readings, [e for _, e in prompts]),
            **each,
        }


def target_set_parser(doc: str | None, *, samples: int) -> argparse.ArgumentParser:
    """The options of the benches that train on several target sets (bench.pairs, bench.prompt_forms)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TOYWORLD))
    parser.add_argument("--seeds", default="1,31,5,7", help="target seeds (1: bench.quality's, 31: the demo's)")
    parser.add_argument("--samples", type=int, default=samples, help="samples per figure")
    parser.add_argument("--steps", type=int, default=int(WORLD_RECIPE["steps"]), help="training steps per concept")
    parser.add_argument("--wordings", type=int, default=TARGET_WORDINGS, help="wordings of each target caption")
    parser.add_argument(
        "--stand-in",
        type=float,
        default=STAND_IN_PROBABILITY,
        help="Recipe.stand_in_probability (the world recipe's by default; 0: none)",
    )
    add_concept_second(parser)
    parser.add_argument("--tag", default="", help="results name suffix, for variants")
    return parser


def target_set_bench(args: argparse.Namespace, prefix: str, **options: int) -> tuple[Bench, Path]:
    """Two torch threads, a fresh work folder named `prefix`… and the `Bench` of a target-set bench,
    set from `target_set_parser`'s options (`options`: the `TargetSet` fields a bench adds)."""
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    targets = TargetSet(wordings=args.wordings, concept_second=args.concept_second, **options)
    bench = Bench(Path(args.model), work, args.samples, args.steps, targets=targets, stand_in=args.stand_in)
    return bench, work


def run(args: argparse.Namespace) -> dict:
    work = Path(args.work or tempfile.mkdtemp(prefix="cdserve-quality-"))
    targets = TargetSet(concept_second=args.concept_second)
    bench = Bench(Path(args.model), work, args.samples, args.steps, targets=targets, stand_in=args.stand_in)
    first, second = bench.concept_config(FIRST), bench.concept_config(SECOND)
    rows: dict[str, dict[str, float]] = {}
    base = Subject(bench.engine, None)
    rows["base model"] = bench.single(base, FIRST, name="")
    rows["base model, appearance spelled out in words (ceiling)"] = bench.in_context(base, FIRST, in_words(FIRST))

    custom = bench.load(bench.train("custom-diffusion", [first]))
    rows["Custom Diffusion (K/V + token, real reg; world recipe)"] = bench.single(
        Subject(bench.engine, custom[1]), FIRST
    )
    rows["w/o regularisation"] = bench.single(
        Subject(bench.engine, bench.load(bench.train("no-reg", [bench.concept_config(FIRST, reg="none")]))[1]), FIRST
    )
    rows["with augmentation (paper; off in the world recipe)"] = bench.single(
        Subject(bench.engine, bench.load(bench.train("augment", [first], augment=True))[1]), FIRST
    )
    rows["paper's recipe unchanged (K/V and token at lr 1e-5, augmentation)"] = bench.single(
        Subject(
            bench.engine,
            bench.load(bench.train("paper", [first], augment=True, learning_rate=1e-5, token_learning_rate=None))[1],
        ),
        FIRST,
    )
    rows["token only (textual inversion)"] = bench.single(
        Subject(bench.engine, bench.load(bench.train("token-only", [first], mode="token"))[1]), FIRST
    )
    rows["fine-tune all UNet + token (UNet at the paper's lr 1e-5)"] = bench.single(
        bench.fine_tuned_whole(bench.train("full", [first], mode="full", learning_rate=1e-5)), FIRST
    )
    for rank in (1, 2, 4):
        compressed, report = compress(custom[1], rank=rank)
        rows[f"compressed, rank {rank} ({report.ratio:.0f}× smaller)"] = bench.single(
            Subject(bench.engine, compressed), FIRST
        )

    second_concept = bench.load(bench.train("second", [second]))
    joint = bench.load(bench.train("joint", [first, second]))
    rows["two concepts: base model, spelled out in words (ceiling)"] = bench.pair(
        base, names=(in_words(FIRST), in_words(SECOND))
    )
    rows["two concepts: joint training"] = bench.pair(Subject(bench.engine, joint[1]))
    merged, merge_report = bench.merge([custom, second_concept])
    rows["two concepts: closed-form merge"] = bench.pair(Subject(bench.engine, merged))
    rows["two concepts: naive sum"] = bench.pair(Subject(bench.engine, naive_sum([custom, second_concept])))

    result = {
        "model": str(args.model),
        "samples_per_metric": args.samples,
        "training_steps_single": args.steps,
        "stand_in": args.stand_in,
        "concept_second": args.concept_second,
        "train_seconds": bench.train_seconds,
        "merge": {
            "constraint_residual": merge_report.max_constraint_residual,
            "regularization_residual": merge_report.max_regularization_residual,
            "target_tokens": merge_report.num_target_tokens,
        },
        "rows": rows,
    }
    table = markdown(rows)
    name = "quality" + variant_suffix(args.stand_in, args.concept_second) + ("-quick" if args.quick else "")
    print(write_result(name, result, table=table))
    print(table)
    return result


def variant_suffix(stand_in: float, concept_second: int | None) -> str:
    """The results name's part for a stand-in probability or target sides other than the world's."""
    sides = {TARGET_CONCEPT_SECOND: "", None: "-random-sides"}.get(concept_second, f"-concept-second-{concept_second}")
    return ("" if stand_in == STAND_IN_PROBABILITY else f"-stand-in-{stand_in:g}") + sides


def concept_second_option(text: str) -> int | None:
    """--concept-second: a count of target images, or "random" (each companion on a random side)."""
    if text == "random":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give a count (0 or more) or 'random'")
    return int(text)


def add_concept_second(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concept-second",
        type=concept_second_option,
        default=TARGET_CONCEPT_SECOND,
        help="target images with a companion that name the concept second, or 'random' for random "
        f"sides (default: the world's {TARGET_CONCEPT_SECOND})",
    )


def markdown(rows: dict[str, dict[str, float]]) -> str:
    columns = [
        "concept_fidelity",
        "prompt_fidelity",
        "drift",
        "both_present",
        *(f"alone_{c.name}" for c in (FIRST, SECOND)),
    ]
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows.items():
        cells = [f"{values[c]:.2f}" if c in values else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TOYWORLD))
    parser.add_argument("--samples", type=int, default=64, help="samples per metric")
    parser.add_argument(
        "--steps", type=int, default=int(WORLD_RECIPE["steps"]), help="training steps for one concept (joint: twice)"
    )
    parser.add_argument("--work", help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="write quality-quick.* (for smoke runs)")
    parser.add_argument(
        "--stand-in",
        type=float,
        default=STAND_IN_PROBABILITY,
        help="Recipe.stand_in_probability of every run (another than the recipe's: quality-stand-in-P.*)",
    )
    add_concept_second(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    return run(args)


if __name__ == "__main__":
    main()
