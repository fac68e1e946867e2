"""Training checkpoints as safetensors + JSON (never pickle): trainable tensors, optimizer, step.

The RNG needs no saving: every random draw of a step derives from (seed, step, rank), see
`training.data.generator_for`; the seed is part of the recipe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSORS_FILE = "state.safetensors"
META_FILE = "state.json"


@dataclass
class TrainingState:
    """step: steps completed; tensors: trainable values by name; optimizer: `Optimizer.state_dict()`."""

    step: int
    tensors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    metrics: dict[str, Any]


def save_state(state: TrainingState, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"param.{name}": t.detach().cpu().contiguous() for name, t in state.tensors.items()}
    for index, slots in state.optimizer["state"].items():
        for key, value in slots.items():
            tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
    save_file(tensors, str(directory / TENSORS_FILE))
    meta = {"step": state.step, "param_groups": state.optimizer["param_groups"], "metrics": state.metrics}
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory


def load_state(directory: str | Path) -> TrainingState:
    directory = Path(directory)
    meta = json.loads((directory / META_FILE).read_text())
    params: dict[str, torch.Tensor] = {}
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in load_file(str(directory / TENSORS_FILE)).items():
        kind, _, rest = name.partition(".")
        if kind == "param":
            params[rest] = tensor
        else:
            index, _, key = rest.partition(".")
            slots.setdefault(int(index), {})[key] = tensor
    optimizer = {"state": slots, "param_groups": meta["param_groups"]}
    return TrainingState(step=int(meta["step"]), tensors=params, optimizer=optimizer, metrics=meta["metrics"])
