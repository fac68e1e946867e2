"""Time-budgeted training stages that checkpoint to safetensors and resume where they stopped.

A stage's data and noise are functions of (seed, step), so a resumed stage continues the exact
stream it was on; only the wall-clock budget (and thus the final step count) varies between runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return {
        f"opt.{idx}.{key}": value.detach().to("cpu", copy=True)
        for idx, state in optimizer.state_dict()["state"].items()
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }


def save_checkpoint(
    path: Path,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    step: int,
    elapsed_s: float,
    loss: float,
) -> None:
    """Write modules, optimizer moments and progress to one safetensors file, atomically."""
    tensors = {
        f"{name}.{k}": v.detach().to("cpu", copy=True) for name, m in modules.items() for k, v in m.state_dict().items()
    }
    tensors.update(_optimizer_tensors(optimizer))
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step), "elapsed_s": f"{elapsed_s:.3f}", "loss": repr(loss)})
    tmp.replace(path)


def load_checkpoint(
    path: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer
) -> tuple[int, float, float]:
    """Restore what `save_checkpoint` wrote; returns (step, elapsed_s, smoothed loss)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    for name, m in modules.items():
        prefix = f"{name}."
        m.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return int(meta["step"]), float(meta["elapsed_s"]), float(meta["loss"])


@dataclass
class StageResult:
    steps: int
    elapsed_s: float
    last_loss: float


def run_stage(
    name: str,
    checkpoint: Path,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int, float], float],
    *,
    budget_s: float,
    max_steps: int | None = None,
    checkpoint_every_s: float = 180.0,
    log_every: int = 50,
) -> StageResult:
    """Call `step_fn(step, progress)` until the wall-clock budget or `max_steps` is spent, whichever
    comes first (progress in [0, 1] is how much of it is spent, for LR schedules), checkpointing every
    few minutes and at the end."""
    resumed = load_checkpoint(checkpoint, modules, optimizer) if checkpoint.exists() else None
    step, elapsed, running = resumed or (0, 0.0, math.nan)
    if step:
        print(f"[{name}] resumed at step {step} ({elapsed:.0f} s done)", flush=True)
    start, last_save = time.monotonic() - elapsed, time.monotonic()
    while elapsed < budget_s and (max_steps is None or step < max_steps):
        progress = max(elapsed / budget_s, step / max_steps if max_steps else 0.0)
        loss = step_fn(step, min(progress, 1.0))
        running = loss if math.isnan(running) else 0.98 * running + 0.02 * loss
        step += 1
        elapsed = time.monotonic() - start
        if step % log_every == 0:
            print(f"[{name}] step {step} loss {running:.4f} {elapsed:.0f}/{budget_s:.0f} s", flush=True)
        if time.monotonic() - last_save > checkpoint_every_s:
            save_checkpoint(checkpoint, modules, optimizer, step, elapsed, running)
            last_save = time.monotonic()
    save_checkpoint(checkpoint, modules, optimizer, step, elapsed, running)
    print(f"[{name}] done: {step} steps in {elapsed:.0f} s, loss {running:.4f}", flush=True)
    return StageResult(step, elapsed, running)
