"""Two concepts in one prompt, over several target sets and, optionally, every pair of the catalogue.

    python -m bench.pairs [--concepts twotone-star,outlined-triangle | all] [--seeds 1,31,5,7] [--run-seeds 0]
                          [--images 8] [--companions 3] [--concept-second 2|random] [--wordings 1] [--stand-in 0.5]
                          [--joint] [--samples 64]

Which eight images a concept trains on moves its pair figures far more than sampling error does
(docs/quality.md, "Known limits"), so `bench.quality`'s one target set cannot judge a change to the
recipe or the data; nor can its one pair judge the merge in general. Here every listed concept (by
default the quality bench's two) is trained with the world recipe on the target images of each
seed, once; per seed the bench reports each alone in context and every pair of them under the
closed-form merge (each concept of the pair named first) and the naive sum, then the mean and
per-seed values. The run's own seed moves a pair about as much, so `--run-seeds` trains every set
once per run seed; a set is then labelled "1-run11" (the run seed 0 keeps the plain target seed).
`--stand-in P` trains with stand-in wordings of the images with a companion, used with probability P
(the world recipe's 0.5 by default); `--concept-second K` names each concept second (its companion on
the left) in K of its images with a companion (the world's 2 by default; `random`: random sides,
the world before); `--joint` also trains each
pair jointly, the figure the paper holds the merge to.
Writes bench/results/pairs[-TAG].json and .md.
"""

from __future__ import annotations

import itertools
import statistics

from bench.common import write_result
from bench.quality import FIRST, SECOND, Bench, Subject, target_set_bench, target_set_parser, token_of
from shared.merge import MergeInput, naive_sum
from training.world.concepts import CONCEPTS, TARGET_COMPANIONS, Concept

PAIR_FIGURES = {
    "joint_both_present": "joint training, both drawn",
    "merge_both_present": "closed-form merge, both drawn",
    "merge_both_present_second_first": "merge, both drawn, second named first",
    "naive_sum_both_present": "naive sum, both drawn",
}
"""The pair table's columns, those measured (joint training with `--joint`; the JSON has each
concept's fidelity under the merge too)."""


def pair_name(pair: tuple[Concept, Concept]) -> str:
    return f"{pair[0].name} + {pair[1].name}"


def measure_pair(
    bench: Bench, pair: tuple[Concept, Concept], deltas: tuple[MergeInput, MergeInput]
) -> dict[str, float]:
    """The pair merged (named in both orders) and summed, from each concept's own delta."""
    merged = Subject(bench.engine, bench.merge(list(deltas))[0])
    merge = bench.pair(merged, pair, alone=False)
    return {
        "merge_both_present": merge["both_present"],
        "merge_both_present_second_first": bench.pair(merged, pair[::-1], alone=False)["both_present"],
        **{f"merge_fidelity_{c.name}": merge[f"fidelity_{c.name}"] for c in pair},
        "naive_sum_both_present": bench.pair(Subject(bench.engine, naive_sum(list(deltas))), pair, alone=False)[
            "both_present"
        ],
    }


def measure_joint(bench: Bench, pair: tuple[Concept, Concept]) -> dict[str, float]:
    """The pair trained jointly (one delta, both tokens, twice the steps): the paper's reference for the merge."""
    joint = bench.load(
        bench.train(".".join(["joint", *(c.name for c in pair)]), [bench.concept_config(c) for c in pair])
    )
    return {"joint_both_present": bench.pair(Subject(bench.engine, joint[1]), pair, alone=False)["both_present"]}


def measure_seed(bench: Bench, concepts: list[Concept], *, joint: bool = False) -> dict[str, dict]:
    """Every concept trained once on `bench`'s target set: each alone (own delta), every pair of them
    (with `joint`, also trained jointly)."""
    deltas = {c.name: bench.load(bench.train(c.name, [bench.concept_config(c)])) for c in concepts}
    return {
        "alone": {
            c.name: bench.in_context(Subject(bench.engine, deltas[c.name][1]), c, token_of(c))["concept_fidelity"]
            for c in concepts
        },
        "pairs": {
            pair_name(pair): {
                **(measure_joint(bench, pair) if joint else {}),
                **measure_pair(bench, pair, (deltas[pair[0].name], deltas[pair[1].name])),
            }
            for pair in itertools.combinations(concepts, 2)
        },
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def set_label(target_seed: int, run_seed: int) -> str:
    return str(target_seed) if run_seed == 0 else f"{target_seed}-run{run_seed}"


def summary(per_seed: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Mean, min and max over target sets of each figure; `all_pairs`: the table's figures over
    every pair and set."""
    runs = list(per_seed.values())
    pairs = runs[0]["pairs"]
    return {
        "alone": {name: spread([r["alone"][name] for r in runs]) for name in runs[0]["alone"]},
        "pairs": {p: {f: spread([r["pairs"][p][f] for r in runs]) for f in pairs[p]} for p in pairs},
        "all_pairs": {f: spread([r["pairs"][p][f] for r in runs for p in pairs]) for f in measured_figures(pairs)},
    }


def measured_figures(pairs: dict[str, dict[str, float]]) -> dict[str, str]:
    """PAIR_FIGURES that the run measured, in the table's order."""
    some = next(iter(pairs.values()))
    return {f: label for f, label in PAIR_FIGURES.items() if f in some}


def markdown(per_seed: dict[str, dict[str, dict]], overall: dict[str, dict]) -> str:
    """Two tables: each concept alone and every pair; a cell is the mean over target sets, then
    each set's figure in the order of the header."""
    seeds = " / ".join(str(s) for s in per_seed)
    figures = measured_figures(overall["pairs"])

    def cell(values: list[float], mean: float) -> str:
        return f"**{mean:.2f}** ({' / '.join(f'{v:.2f}' for v in values)})"

    lines = [f"| concept alone (target sets {seeds}) | concept fidelity |", "|---|---|"]
    for name, stats in overall["alone"].items():
        lines.append(f"| {name} | {cell([r['alone'][name] for r in per_seed.values()], stats['mean'])} |")
    lines += [
        "",
        f"| pair (target sets {seeds}) | " + " | ".join(figures.values()) + " |",
        "|---" * (len(figures) + 1) + "|",
    ]
    for pair, stats in overall["pairs"].items():
        values = [cell([r["pairs"][pair][f] for r in per_seed.values()], stats[f]["mean"]) for f in figures]
        lines.append(f"| {pair} | " + " | ".join(values) + " |")
    if len(overall["pairs"]) > 1:
        lines.append(
            "| **every pair** | " + " | ".join(f"**{overall['all_pairs'][f]['mean']:.2f}**" for f in figures) + " |"
        )
    return "\n".join(lines) + "\n"


def catalogue_concepts(listing: str) -> list[Concept]:
    """ "a,b,…" or "all" → catalogue concepts; ValueError naming what is wrong."""
    names = list(CONCEPTS) if listing == "all" else listing.split(",")
    unknown = [n for n in names if n not in CONCEPTS]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"give two or more distinct names of {', '.join(CONCEPTS)}, or 'all' (unknown: {unknown})")
    return [CONCEPTS[n] for n in names]


def main(argv: list[str] | None = None) -> dict:
    parser = target_set_parser(__doc__, samples=64)
    parser.add_argument("--run-seeds", default="0", help="the recipe's seeds, each set trained once per seed")
    parser.add_argument("--concepts", default=f"{FIRST.name},{SECOND.name}", help="catalogue concepts, or 'all'")
    parser.add_argument("--images", type=int, default=8, help="target images per concept")
    parser.add_argument("--companions", type=int, default=TARGET_COMPANIONS, help="target images beside a companion")
    parser.add_argument("--joint", action="store_true", help="also train every pair jointly (twice the steps)")
    args = parser.parse_args(argv)
    try:
        concepts = catalogue_concepts(args.concepts)
    except ValueError as e:
        parser.error(f"--concepts: {e}")
    shared, work = target_set_bench(args, "cdserve-pairs-", images=args.images, companions=args.companions)
    per_seed = {}
    seeds, run_seeds = ([int(s) for s in listing.split(",")] for listing in (args.seeds, args.run_seeds))
    for seed, run_seed in itertools.product(seeds, run_seeds):
        label = set_label(seed, run_seed)
        bench = shared.for_targets(seed, work / label, run_seed=run_seed)
        per_seed[label] = measure_seed(bench, concepts, joint=args.joint)
        drawn = {
            pair: {f: round(r[f], 2) for f in measured_figures(per_seed[label]["pairs"])}
            for pair, r in per_seed[label]["pairs"].items()
        }
        print(f"target set {label}: alone {per_seed[label]['alone']}, pairs {drawn}", flush=True)
    overall = summary(per_seed)
    name = "pairs" + (f"-{args.tag}" if args.tag else "")
    result = {
        "model": args.model,
        "concepts": [c.name for c in concepts],
        "target_images": args.images,
        "companions": args.companions,
        "concept_second": args.concept_second,
        "wordings": args.wordings,
        "stand_in": args.stand_in,
        "joint": args.joint,
        "samples_per_figure": args.samples,
        "training_steps": args.steps,
        "run_seeds": run_seeds,
        "per_seed": per_seed,
        "summary": overall,
    }
    table = markdown(per_seed, overall)
    print(write_result(name, result, table=table))
    print(table)
    return result


if __name__ == "__main__":
    main()
