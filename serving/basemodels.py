"""Where a replica's base model comes from when the config names none: the embedded toy-world
model, or, until it ships, the tiny seeded SD pipeline written once per node (its weights are
deterministic, so every replica computes the same fingerprint)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "shared" / "assets"
TOYWORLD_DIR = ASSETS / "toyworld"
TINY_DIR = Path(tempfile.gettempdir()) / "cdserve-tiny-base"


def default_model_dir() -> Path:
    if (TOYWORLD_DIR / "model_index.json").exists():
        return TOYWORLD_DIR
    return materialize_tiny(TINY_DIR)


def materialize_tiny(target: Path, seed: int = 0) -> Path:
    """Save the tiny pipeline as a diffusers directory at `target` (atomically; kept if present)."""
    from shared.tiny import build_tiny_pipeline

    if (target / "model_index.json").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix=target.name + "-", dir=target.parent))
    build_tiny_pipeline(seed).save_pretrained(staging, safe_serialization=True)
    try:
        os.rename(staging, target)
    except OSError:  # another replica on this node got there first
        shutil.rmtree(staging, ignore_errors=True)
    return target
