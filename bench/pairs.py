"""Two concepts in one prompt, over several target sets.

    python -m bench.pairs [--seeds 1,31,5,7] [--images 8] [--companions 3] [--wordings 1] [--samples 64]

Which eight images a concept trains on moves its pair figures far more than sampling error does
(TRAINING.md: the star beside the triangle in words from 0.02 to 0.95 across target seeds), so
`bench.quality`'s one target set cannot judge a change to the recipe or the data. Here both concepts
of the quality bench are trained with the world recipe on the target images of each seed; per seed
it reports each concept alone in context and the pair under the closed-form merge (with each concept
named first) and the naive sum, then the mean and range over seeds. Writes
bench/results/pairs[-TAG].json and .md.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch

from bench.common import write_result
from bench.quality import FIRST, SECOND, Bench, Subject, target_set_parser, token_of
from shared.merge import naive_sum
from training.world.concepts import TARGET_COMPANIONS

FIGURES = {
    "alone_first": f"{FIRST.name} alone", "alone_second": f"{SECOND.name} alone",
    "merge_both_present": "closed-form merge, both drawn",
    "merge_both_present_second_first": f"merge, both drawn, {SECOND.name} named first",
    "naive_sum_both_present": "naive sum, both drawn",
}
"""The table's columns (the JSON has the per-concept fidelities under the merge too)."""


def measure_seed(bench: Bench) -> dict[str, float]:
    """Both concepts trained on `bench`'s target set: each alone (own delta), the pair merged and summed."""
    deltas = [bench.load(bench.train(concept.name, [bench.concept_config(concept)])) for concept in (FIRST, SECOND)]
    merged = Subject(bench.engine, bench.merge(deltas)[0])
    merge = bench.pair(merged, alone=False)
    return {
        "alone_first": bench.in_context(Subject(bench.engine, deltas[0][1]), FIRST, token_of(FIRST))["concept_fidelity"],
        "alone_second": bench.in_context(Subject(bench.engine, deltas[1][1]), SECOND, token_of(SECOND))["concept_fidelity"],
        "merge_both_present": merge["both_present"],
        "merge_both_present_second_first": bench.pair(merged, alone=False, second_first=True)["both_present"],
        f"merge_fidelity_{FIRST.name}": merge[f"fidelity_{FIRST.name}"],
        f"merge_fidelity_{SECOND.name}": merge[f"fidelity_{SECOND.name}"],
        "naive_sum_both_present": bench.pair(Subject(bench.engine, naive_sum(deltas)), alone=False)["both_present"],
    }


def summary(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        figure: {"mean": statistics.fmean(r[figure] for r in per_seed.values()),
                 "min": min(r[figure] for r in per_seed.values()), "max": max(r[figure] for r in per_seed.values())}
        for figure in next(iter(per_seed.values()))
    }  # fmt: skip


def markdown(per_seed: dict[int, dict[str, float]], overall: dict[str, dict[str, float]]) -> str:
    lines = ["| target seed | " + " | ".join(FIGURES.values()) + " |", "|---" * (len(FIGURES) + 1) + "|"]
    lines += [f"| {seed} | " + " | ".join(f"{r[f]:.2f}" for f in FIGURES) + " |" for seed, r in per_seed.items()]
    lines.append("| **mean** | " + " | ".join(f"**{overall[f]['mean']:.2f}**" for f in FIGURES) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = target_set_parser(__doc__, samples=64)
    parser.add_argument("--images", type=int, default=8, help="target images per concept")
    parser.add_argument("--companions", type=int, default=TARGET_COMPANIONS, help="target images beside a companion")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="cdserve-pairs-"))
    shared = Bench(Path(args.model), work, args.samples, args.steps, False, target_images=args.images,
                   target_companions=args.companions, target_wordings=args.wordings)  # fmt: skip
    per_seed = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        per_seed[seed] = measure_seed(shared.for_targets(seed, work / str(seed)))
        print(f"target seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in per_seed[seed].items()), flush=True)
    overall = summary(per_seed)
    name = "pairs" + (f"-{args.tag}" if args.tag else "")
    result = {"model": args.model, "pair": [FIRST.name, SECOND.name], "target_images": args.images,
              "companions": args.companions, "wordings": args.wordings, "samples_per_figure": args.samples,
              "training_steps": args.steps, "per_seed": per_seed, "summary": overall}  # fmt: skip
    table = markdown(per_seed, overall)
    print(write_result(name, result, table=table))
    print(table)
    return result


if __name__ == "__main__":
    main()
