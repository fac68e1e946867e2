"""Does a concept survive prompts worded unlike its training captions?

    python -m bench.prompt_forms [--seeds 1,31,5,7] [--samples 32] [--wordings 1] [--stand-in 0.5]
                                 [--concept-second 2|random] [--tag NAME]

A concept's eight captions all read "a {size} <token> star[ and a {size} {plain companion}] on a …
background". Users word prompts otherwise: "photo of …", no size word, the concept named after
another object, that object patterned. Per target seed this trains the quality bench's first
concept with the world recipe and reads its fidelity (the concept drawn at all) in each wording,
beside the base model with the concept's appearance in words in the same wording: the ceiling.
Companions are drawn at random (shape, colour, and for "patterned" a pattern and second colour)
and are never the concept. With `--wordings k`, each target caption comes in k wordings (one drawn
per use); `--stand-in P` trains on stand-in wordings with probability P (the world recipe's 0.5 by
default); `--concept-second K` names the concept second in K of its images with a companion (the
world's 2 by default; `random`: random sides). Variants take `--tag`. Writes
bench/results/prompt_forms[-TAG].json and .md.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from bench.common import write_result
from bench.quality import FIRST, Bench, Subject, in_words, target_set_bench, target_set_parser, token_of
from training.world import scenes
from training.world.captions import describe
from training.world.concepts import Concept
from training.world.metrics import concept_fidelity


@dataclass(frozen=True)
class Form:
    """One way of wording a prompt: which companion (none, "plain" or "patterned"), named before
    or after the concept, with "photo of" in front, with or without the concept's size word."""

    name: str
    companion: str | None = None
    concept_first: bool = True
    photo: bool = False
    size_word: bool = True


FORMS = (
    Form("alone (the captions' wording)"),
    Form("alone, photo of", photo=True),
    Form("alone, no size word", size_word=False),
    Form("plain companion named after", "plain"),
    Form("plain companion named first", "plain", concept_first=False),
    Form("plain companion first, photo of", "plain", concept_first=False, photo=True),
    Form("plain companion first, no size word", "plain", concept_first=False, size_word=False),
    Form("patterned companion named after", "patterned"),
    Form("patterned companion named first", "patterned", concept_first=False),
)


def _companion(rng: np.random.Generator, kind: str, concept: Concept) -> tuple[str, scenes.Appearance]:
    patterns = (scenes.PLAIN,) if kind == "plain" else scenes.CONCEPT_PATTERNS
    while True:
        shape, look = str(rng.choice(scenes.SHAPES)), scenes.random_appearance(rng, patterns)
        if look != concept.appearance:
            return shape, look


def form_prompts(form: Form, concept: Concept, name: str, n: int, seed: int = 0) -> list[str]:
    """`n` prompts in `form` naming `concept` by `name`; the same scenes for every `name`."""
    rng = np.random.default_rng([seed, 0xF0])
    prompts = []
    for _ in range(n):
        size, background = str(rng.choice(scenes.SIZES)), str(rng.choice(list(scenes.BACKGROUNDS)))
        kinds: list[str | None] = [None]
        if form.companion:
            kinds.insert(1 if form.concept_first else 0, form.companion)
        objects: list[scenes.WorldObject] = []
        for slot, kind in enumerate(kinds):
            shape, look = (concept.category, concept.appearance) if kind is None else _companion(rng, kind, concept)
            objects.append(scenes.place(rng, shape, look, size, slot, len(kinds)))
        prompts.append(
            describe(
                scenes.Scene(background, tuple(objects)),
                photo=form.photo,
                sizes=tuple(kind is not None or form.size_word for kind in kinds),
                modifiers=tuple(name if kind is None else None for kind in kinds),
            )
        )
    return prompts


def measure_seed(bench: Bench, concept: Concept, samples: int) -> dict[str, dict[str, float]]:
    """Per form: the trained concept's fidelity and the base model's with the appearance in words."""
    delta = bench.load(bench.train(concept.name, [bench.concept_config(concept)]))[1]
    subjects = {
        "concept": (Subject(bench.engine, delta), token_of(concept)),
        "in words": (Subject(bench.engine, None), in_words(concept)),
    }
    out: dict[str, dict[str, float]] = {}
    for form in FORMS:
        out[form.name] = {}
        for who, (subject, name) in subjects.items():
            readings = bench.read(subject, form_prompts(form, concept, name, samples), seed=5000)
            out[form.name][who] = concept_fidelity(readings, concept)
    return out


def markdown(per_seed: dict[int, dict[str, dict[str, float]]]) -> str:
    seeds = list(per_seed)
    lines = [
        "| wording | " + " | ".join(f"seed {s}" for s in seeds) + " | **mean** | in words (ceiling), mean |",
        "|---" * (len(seeds) + 3) + "|",
    ]
    for form in FORMS:
        values = [per_seed[s][form.name]["concept"] for s in seeds]
        ceiling = statistics.fmean(per_seed[s][form.name]["in words"] for s in seeds)
        lines.append(
            f"| {form.name} | "
            + " | ".join(f"{v:.2f}" for v in values)
            + f" | **{statistics.fmean(values):.2f}** | {ceiling:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = target_set_parser(__doc__, samples=32).parse_args(argv)
    shared, work = target_set_bench(args, "cdserve-forms-")
    per_seed = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        per_seed[seed] = measure_seed(shared.for_targets(seed, work / str(seed)), FIRST, args.samples)
        print(
            f"target seed {seed}: " + ", ".join(f"{k} {v['concept']:.2f}" for k, v in per_seed[seed].items()),
            flush=True,
        )
    result = {
        "model": args.model,
        "concept": FIRST.name,
        "samples_per_form": args.samples,
        "training_steps": args.steps,
        "wordings": args.wordings,
        "stand_in": args.stand_in,
        "concept_second": args.concept_second,
        "per_seed": per_seed,
    }
    name = "prompt_forms" + (f"-{args.tag}" if args.tag else "")
    table = markdown(per_seed)
    print(write_result(name, result, table=table))
    print(table)
    return result


if __name__ == "__main__":
    main()
