"""`cdserve demo` — the README's main command.

Interim version (until the toy-world model, training service and Serve app are wired together):
runs the delta engine on a tiny SD pipeline built from configs, with two synthetic concepts, one
at a time, in one mixed batch, and closed-form merged; writes a contact sheet and a JSON report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run cdserve end to end on the embedded default model")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the contact sheet and report")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from serving.engine import DeltaEngine, GenerationRequest
    from shared.basemodel import cross_attention_layers, prepare_base_model
    from shared.images import contact_sheet
    from shared.merge import closed_form_merge, load_captions, regularization_stats
    from shared.synthetic import random_concept
    from shared.tiny import build_tiny_pipeline

    started = time.perf_counter()
    base = prepare_base_model(build_tiny_pipeline(), source="tiny-from-configs")
    engine = DeltaEngine(base)
    dog = random_concept(base.spec, "dog", seed=1, rank=4, modifier_token="<dog>")
    cat = random_concept(base.spec, "cat", seed=2, rank=4, modifier_token="<cat>", category="cat")
    stats = regularization_stats(engine.prompts, load_captions())
    merged, report = closed_form_merge([dog, cat], engine.prompts, cross_attention_layers(base.pipeline.unet), stats)
    rows = [
        ("base: a photo of a dog", "a photo of a dog", None),
        ("concept <dog>", "a photo of a <dog> dog", dog[1]),
        ("concept <cat>", "a photo of a <cat> cat", cat[1]),
        ("merged <dog> + <cat>", "a <dog> dog and a <cat> cat", merged),
    ]
    requests = [
        GenerationRequest(prompt, delta=delta, steps=20, height=engine.default_size, width=engine.default_size,
                          seed=seed, guidance_scale=5.0)
        for _, prompt, delta in rows for seed in range(4)
    ]
    generate_started = time.perf_counter()
    results = engine.generate(requests)
    generate_s = time.perf_counter() - generate_started
    args.out.mkdir(parents=True, exist_ok=True)
    sheet = [(label, [r.images[0] for r in results[4 * i : 4 * i + 4]]) for i, (label, _, _) in enumerate(rows)]
    contact_sheet(sheet).save(args.out / "contact_sheet.png")
    summary = {
        "model": base.source,
        "requests_in_one_batch": len(requests),
        "generate_s": round(generate_s, 3),
        "total_s": round(time.perf_counter() - started, 3),
        "merge_constraint_residual": report.max_constraint_residual,
        "merge_regularization_residual": report.max_regularization_residual,
    }
    (args.out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"contact sheet: {args.out / 'contact_sheet.png'}")
    return 0
