"""Shared benchmark plumbing: timing, device description, JSON results."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from serving.engine import GenerationRequest
from shared.delta import ConceptDelta

RESULTS = Path(__file__).resolve().parent / "results"
"""The kept results: the latest output of each bench and device (bench/README.md lists which)."""
SCRATCH = Path(__file__).resolve().parents[1] / "out" / "bench"
"""Where the GPU benches write when run on a CPU (ignored by git): their tiny-model figures only
show that the bench runs, not how a GPU does."""


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def one_request_per_concept(
    deltas: Sequence[ConceptDelta], *, with_concepts: bool, steps: int, size: int
) -> list[GenerationRequest]:
    """The batch the engine benches time: request i seeded i, naming concept i (every request its own
    concept) or, without concepts, the same prompt on the base alone (the baseline)."""
    return [
        GenerationRequest(
            prompt=f"a photo of a <c{i}> dog" if with_concepts else "a photo of a dog",
            delta=delta if with_concepts else None,
            steps=steps,
            height=size,
            width=size,
            seed=i,
        )
        for i, delta in enumerate(deltas)
    ]


def interleaved_medians(
    runs: dict[str, Callable[[], object]], repeats: int, synchronize: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Median wall seconds of each run, after one warm-up each. The runs take turns within every
    repeat, so a drift in clocks or load (a GPU warming up, a busy neighbour) shifts them all alike
    and leaves their ratios fair."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn()
    synchronize()
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def results_heading(title: str, command: str, summary: str) -> list[str]:
    """The opening lines of a results page: its title, then the command that produced it and what it ran."""
    return [f"# {title}", "", f"`{command}` — {summary}", ""]


def write_result(name: str, payload: dict, *, table: str | None = None, folder: Path | None = None) -> Path:
    """FOLDER/NAME.json (default folder: bench/results), and with `table` its Markdown beside it."""
    folder = folder or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if table is not None:
        (folder / f"{name}.md").write_text(table)
    return path
