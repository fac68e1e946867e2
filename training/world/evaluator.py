"""The evaluator: a small CNN that reads a world image back into attributes — the project's CLIP stand-in.

It predicts the background, the object count and, for each object slot (slot a = the only or the
left object, slot b = the right one), shape, colour, second colour, pattern and size. It is trained
on renders softened the way generated samples are (blur, noise, colour jitter and VAE round trips),
since a classifier that has only seen crisp renders flatters a blurry model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from training.world.scenes import BACKGROUNDS, COLOURS, PATTERNS, SHAPES, SIZES, Appearance, Scene, to_array

NONE = "none"
_SYMMETRIC = ("striped", "checkered")  # which colour comes "first" is not visible: labels use a sorted pair


def _slot_heads(slot: str) -> dict[str, tuple[str, ...]]:
    return {
        f"{slot}_shape": SHAPES,
        f"{slot}_colour": tuple(COLOURS),
        f"{slot}_colour2": (NONE, *COLOURS),
        f"{slot}_pattern": PATTERNS,
        f"{slot}_size": SIZES,
    }


HEADS: dict[str, tuple[str, ...]] = {
    "background": tuple(BACKGROUNDS),
    "count": ("1", "2"),
    **_slot_heads("a"),
    **_slot_heads("b"),
}
IGNORE = -100
CHANNELS = (32, 64, 96, 128)


def canonical(appearance: Appearance) -> Appearance:
    """The form the evaluator reports: symmetric patterns list their two colours in palette order."""
    if appearance.pattern in _SYMMETRIC and appearance.colour2 is not None:
        order = list(COLOURS)
        first, second = sorted((appearance.colour, appearance.colour2), key=order.index)
        return Appearance(first, appearance.pattern, second)
    return appearance


def scene_labels(scene: Scene) -> dict[str, int]:
    """Class index per head; slot b's heads are IGNORE for one-object scenes."""
    labels = {"background": HEADS["background"].index(scene.background), "count": len(scene.objects) - 1}
    for slot in ("a", "b"):
        objects = scene.objects
        obj = objects[0] if slot == "a" else (objects[1] if len(objects) > 1 else None)
        if obj is None:
            labels.update({name: IGNORE for name in _slot_heads(slot)})
            continue
        app = canonical(obj.appearance)
        values = (obj.shape, app.colour, app.colour2 or NONE, app.pattern, obj.size)
        labels.update({name: HEADS[name].index(v) for name, v in zip(_slot_heads(slot), values, strict=True)})
    return labels


class EvaluatorNet(nn.Module):
    """Four 3×3 conv layers (3→32→64→96→128 with BN + ReLU; the first two strided, the last two
    max-pooled) take 64×64 to a 4×4 map; one linear layer per head reads the flattened map (flattened,
    not pooled: slots are left and right)."""

    def __init__(self, channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for i, c in enumerate(channels):
            stride = 2 if i < 2 else 1
            layers += [nn.Conv2d(prev, c, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if i >= 2:
                layers.append(nn.MaxPool2d(2))
            prev = c
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.2))
        self.heads = nn.ModuleDict({name: nn.Linear(prev * 16, len(classes)) for name, classes in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (n, 3, 64, 64) fp32 in [-1, 1] → logits per head, (n, classes)."""
        h = self.features(x)
        return {name: head(h) for name, head in self.heads.items()}


@dataclass(frozen=True)
class ObjectReading:
    """One object as the evaluator reads it: a `WorldObject` without its position, appearance in `canonical` form."""

    shape: str
    appearance: Appearance
    size: str


@dataclass(frozen=True)
class SceneReading:
    """What the evaluator sees in one image; `objects` left to right."""

    background: str
    objects: tuple[ObjectReading, ...]


def _reading(pred: dict[str, str], slot: str) -> ObjectReading:
    colour, colour2, pattern = pred[f"{slot}_colour"], pred[f"{slot}_colour2"], pred[f"{slot}_pattern"]
    if pattern == "plain" or colour2 in (NONE, colour):
        appearance = Appearance(colour)  # an incoherent reading counts as plain: it shows no pattern
    else:
        appearance = Appearance(colour, pattern, colour2)
    return ObjectReading(pred[f"{slot}_shape"], appearance, pred[f"{slot}_size"])


class Evaluator:
    """A trained `EvaluatorNet` with its config; reads images into `SceneReading`s."""

    WEIGHTS = "evaluator.safetensors"
    CONFIG = "evaluator.json"

    def __init__(self, net: EvaluatorNet, config: dict) -> None:
        self.net = net.eval()
        self.config = config

    @classmethod
    def load(cls, directory: str | Path) -> Evaluator:
        directory = Path(directory)
        config = json.loads((directory / cls.CONFIG).read_text())
        if config["heads"] != {k: list(v) for k, v in HEADS.items()}:
            raise ValueError(f"{directory / cls.CONFIG}: heads differ from this code's HEADS; retrain the evaluator")
        net = EvaluatorNet(tuple(config["channels"]))
        net.load_state_dict(load_file(str(directory / cls.WEIGHTS)))
        return cls(net, config)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(directory / self.WEIGHTS))
        (directory / self.CONFIG).write_text(json.dumps(self.config, indent=2) + "\n")

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
        """images: (n, 3, 64, 64) fp32 in [-1, 1]."""
        parts = [self.net(images[i : i + batch]) for i in range(0, len(images), batch)]
        return {name: torch.cat([p[name] for p in parts]) for name in HEADS}

    def read(self, images: list[Image.Image] | torch.Tensor) -> list[SceneReading]:
        """Read PIL images (any size, resized to 64×64) or a (n, 3, 64, 64) [-1, 1] tensor."""
        if not isinstance(images, torch.Tensor):
            images = torch.from_numpy(
                to_array([im.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR) for im in images])
            )
        idx = {name: v.argmax(1).tolist() for name, v in self.logits(images).items()}
        readings = []
        for i in range(len(images)):
            pred = {name: HEADS[name][idx[name][i]] for name in HEADS}
            slots = ("a", "b") if pred["count"] == "2" else ("a",)
            readings.append(SceneReading(pred["background"], tuple(_reading(pred, s) for s in slots)))
        return readings

    def accuracy(self, images: torch.Tensor, scenes: list[Scene]) -> dict[str, float]:
        """Per-head accuracy against the scenes' labels (slot b heads over two-object scenes only)."""
        logits = self.logits(images)
        labels = [scene_labels(s) for s in scenes]
        out = {}
        for name in HEADS:
            y = torch.tensor([lab[name] for lab in labels])
            keep = y != IGNORE
            out[name] = float((logits[name].argmax(1)[keep] == y[keep]).float().mean())
        return out


def label_tensor(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    labels = [scene_labels(s) for s in scenes]
    return {name: torch.tensor([lab[name] for lab in labels]) for name in HEADS}


def soften(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random blur (σ ≤ 1.2 px), noise (σ ≤ 0.08), brightness/contrast and colour shifts: sample-like flaws."""
    n = len(x)
    sigma = torch.from_numpy(rng.uniform(0.0, 1.2, n).astype(np.float32)) * torch.from_numpy(rng.random(n) < 0.6)
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k = k / k.sum(1, keepdim=True)  # (n, 5) separable kernels, one per image
    pad = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    zero = torch.zeros(())  # a tensor start: `sum` then types as a tensor, with the same values as from 0
    rows = sum((k[:, j, None, None, None] * pad[:, :, :, j : j + 64] for j in range(5)), zero)
    blurred = sum((k[:, j, None, None, None] * rows[:, :, j : j + 64, :] for j in range(5)), zero)
    contrast = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 1, 1, 1)).astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-0.06, 0.06, (n, 3, 1, 1)).astype(np.float32))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
    noise = noise * torch.from_numpy(rng.uniform(0.0, 0.08, (n, 1, 1, 1)).astype(np.float32))
    return (blurred * contrast + shift + noise).clamp(-1, 1)
