"""`cdserve demo` — the README's main command: the whole system on the embedded toy-world model.

1. start the local stack (registry, Ray with the Serve app, training service);
2. submit a training job for the concept in examples/twotone-star over gRPC and follow it;
3. publish a second concept trained earlier by the project (examples/concepts/);
4. generate over gRPC: base model, with the new concept, and both concepts (closed-form merge);
5. read the images with the world's evaluator, write a contact sheet and a report; shut down.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TRAINED = ("twotone-star", "star", "<cd-twotone-star>")
SHIPPED = ("outlined-triangle", "triangle", "<cd-outlined-triangle>")
SEEDS = range(6)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run cdserve end to end on the embedded default model")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the contact sheet and report")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the world recipe's)")
    parser.add_argument(
        "--keep", action="store_true", help="leave the stack running afterwards, for the playground, until Ctrl-C"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cli.stack import LocalStack
    from serving.config import ServingConfig

    started = time.perf_counter()
    out: Path = args.out
    shutil.rmtree(out / "data", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    config = ServingConfig(limits={"max_steps": 100})
    print("starting the local stack (registry, Ray + Serve, training service) …", flush=True)
    with LocalStack(config, out / "data", image_roots=[EXAMPLES]) as endpoints:
        timings["start_s"] = time.perf_counter() - started
        print(endpoints.describe(), flush=True)
        trained = _train(endpoints, args.steps, timings)
        shipped = _publish_shipped(endpoints)
        rows = _generate(endpoints, trained, shipped, timings)
        timings["total_s"] = time.perf_counter() - started
        report = _report(rows, timings, trained, shipped)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        _contact_sheet(rows, out / "contact_sheet.png")
        print(json.dumps(report, indent=2))
        print(f"contact sheet: {out / 'contact_sheet.png'}\nreport: {out / 'report.json'}")
        if args.keep:
            _wait_for_stop(endpoints)
    return 0


def _wait_for_stop(endpoints) -> None:
    """--keep: both concepts stay published and the stack up, so a newcomer can open the page."""
    import signal
    import threading

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"the stack stays up: open {endpoints.playground} with the operator token {endpoints.token}\n"
        "Ctrl-C (or SIGTERM) stops everything.",
        flush=True,
    )
    stop.wait()


def _train(endpoints, steps: int | None, timings: dict[str, float]) -> str:
    from proto import training_pb2
    from training.client import TrainingClient, uploads_from_folder
    from training.world.recipe import WORLD_RECIPE

    concept_id, category, token = TRAINED
    steps = steps or int(WORLD_RECIPE["steps"])
    spec = training_pb2.TrainingSpec(
        concepts=[
            training_pb2.ConceptSpec(
                concept_id=concept_id,
                category=category,
                modifier_token=token,
                regularization=training_pb2.REAL,
                regularization_uri=str(EXAMPLES / concept_id / "reg"),
            )
        ],
        recipe=training_pb2.Recipe(**{**WORLD_RECIPE, "steps": steps}),
    )
    started = time.perf_counter()
    with TrainingClient(endpoints.training, token=endpoints.token) as client:
        job = client.submit(spec, uploads_from_folder(EXAMPLES / concept_id / "targets"))
        print(f"training job {job.job_id} submitted: {len(spec.concepts)} concept, {steps} steps", flush=True)
        for update in client.watch(job.job_id):
            job = update
            name = training_pb2.JobState.Name(job.state)
            restarted = f" (attempt {job.attempt}, resumed at step {job.resumed_from_step})" if job.attempt > 1 else ""
            print(
                f"  {name:10s} step {job.step:4d}/{job.total_steps} loss {job.loss:.4f} eta {job.eta_s:4.0f}s"
                f"{restarted}",
                flush=True,
            )
    if job.state != training_pb2.SUCCEEDED:
        raise SystemExit(f"training failed: {job.error.message or training_pb2.JobState.Name(job.state)}")
    timings["train_s"] = time.perf_counter() - started
    return job.published[0]


def _publish_shipped(endpoints) -> str:
    from shared.registry_client import RegistryClient

    concept_id = SHIPPED[0]
    client = RegistryClient(endpoints.registry, token=endpoints.token)
    result = client.publish(EXAMPLES / "concepts" / f"{concept_id}.safetensors", concept_id=concept_id)
    return f"{result.concept.concept_id}@{result.concept.version}"


def _generate(endpoints, trained: str, shipped: str, timings: dict[str, float]) -> list[tuple[str, list, dict]]:
    from serving.client import GeneratorClient

    t_token, s_token = TRAINED[2], SHIPPED[2]
    plan = [
        ("base model", "a star on a white background", []),
        (f"{trained}", f"a {t_token} star on a white background", [trained]),
        (f"{trained}, new context", f"a small {t_token} star and a blue circle on a pink background", [trained]),
        (f"{shipped}", f"a {s_token} triangle on a gray background", [shipped]),
        (
            "both, closed-form merge",
            f"a {t_token} star and a {s_token} triangle on a white background",
            [trained, shipped],
        ),
    ]
    rows = []
    started = time.perf_counter()
    with GeneratorClient(endpoints.generator, application=endpoints.application, token=endpoints.token) as client:
        for label, prompt, concepts in plan:
            responses = [
                client.generate(
                    GeneratorClient.request(prompt, concepts=concepts, seed=seed, steps=20, guidance_scale=4.0)
                )
                for seed in SEEDS
            ]
            rows.append(
                (
                    label,
                    [r.images[0].png for r in responses],
                    {
                        "prompt": prompt,
                        "concepts": concepts,
                        "mean_total_ms": sum(r.timings.total_ms for r in responses) / len(responses),
                    },
                )
            )
            print(f"generated {label!r}: {len(responses)} images", flush=True)
    timings["generate_s"] = time.perf_counter() - started
    return rows


def _report(rows, timings: dict[str, float], trained: str, shipped: str) -> dict:
    """Concept fidelity and composition of the generated images, read by the world's evaluator."""
    from PIL import Image

    from serving.basemodels import TOYWORLD_DIR
    from training.world.concepts import CONCEPTS
    from training.world.evaluator import Evaluator
    from training.world.metrics import composition, concept_fidelity

    evaluator = Evaluator.load(TOYWORLD_DIR)
    first, second = CONCEPTS[TRAINED[0]], CONCEPTS[SHIPPED[0]]

    def read(pngs: list[bytes]):
        return evaluator.read([Image.open(io.BytesIO(p)).convert("RGB") for p in pngs])

    base, with_trained, new_context, with_shipped, merged = (read(pngs) for _, pngs, _ in rows)
    return {
        "concepts": {"trained_now": trained, "shipped": shipped},
        "quality": {
            "base_shows_trained_concept": concept_fidelity(base, first),
            "trained_concept_fidelity": concept_fidelity(with_trained + new_context, first),
            "shipped_concept_fidelity": concept_fidelity(with_shipped, second),
            "merge_both_present": composition(merged, (first, second)),
        },
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "rows": [{"label": label, **meta} for label, _, meta in rows],
    }


def _contact_sheet(rows, path: Path) -> None:
    import numpy as np
    from PIL import Image

    from shared.images import contact_sheet

    def decode(png: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255.0

    sheet = [(f"{label}\n{meta['prompt']}", [decode(p) for p in pngs]) for label, pngs, meta in rows]
    contact_sheet(sheet, scale=3, label_width=420).save(path)
