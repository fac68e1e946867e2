"""Training fixtures: synthetic target images, the tiny base model on disk, and a helper that runs
an asyncio server in a background thread (real gRPC on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from training.config import ConceptConfig, Recipe, TrainConfig

T = TypeVar("T")
COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 40), (200, 40, 200), (40, 200, 200)]


def write_images(folder: Path, count: int, *, offset: int = 0, size: tuple[int, int] = (24, 20)) -> list[str]:
    """Solid-colour PNGs with a white square, so that flips and crops change them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = Image.new("RGB", size, COLOURS[(i + offset) % len(COLOURS)])
        image.paste((255, 255, 255), (2, 2, 8, 8))
        path = folder / f"{i:03d}.png"
        image.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline saved as a diffusers directory (what Ray workers load by path)."""
    from shared.tiny import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("tiny-base")
    build_tiny_pipeline(seed=0).save_pretrained(folder)
    return folder


def concept(
    tmp: Path, concept_id: str, category: str, *, count: int = 2, offset: int = 0, **fields: Any
) -> ConceptConfig:
    images = write_images(tmp / f"images-{concept_id}", count, offset=offset)
    return ConceptConfig(
        concept_id=concept_id, category=category, images=images, **{"regularization": "none", **fields}
    )


def small_config(
    tmp: Path, concepts: list[ConceptConfig], *, base_model: str = "tiny", bundle_id: str | None = None, **recipe: Any
) -> TrainConfig:
    defaults: dict[str, Any] = {"steps": 2, "batch_size": 2}
    return TrainConfig(
        base_model=base_model,
        concepts=concepts,
        recipe=Recipe(**{**defaults, **recipe}),
        output_dir=str(tmp / "out"),
        bundle_id=bundle_id,
    )


class LoopThread:
    """An asyncio loop in a daemon thread, for servers the synchronous tests call over gRPC."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@dataclass
class TrainingStack:
    """What `training_stack` started: the training service, its registry, and Ray's dashboard."""

    service: Any
    registry: Any
    spec: Any
    root: Path
    dashboard: str

    @property
    def images_root(self) -> Path:
        """The one server folder Submit may reference images in."""
        return self.root / "server-images"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    @property
    def registry_target(self) -> str:
        return f"127.0.0.1:{self.registry.port}"

    @property
    def jobs(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard)


@contextlib.contextmanager
def training_stack(root: Path, base_dir: Path, limits: Any, tokens: dict[str, str]) -> Iterator[TrainingStack]:
    """Ray (with its dashboard: the job-submission API lives there), a registry and the service.

    Ray Jobs' drivers find their cluster through TEMP_DIR/ray_current_cluster, else by grepping `ps`
    for any GCS: with other clusters on the machine a driver may join theirs (seen: a job hung on a
    dead cluster's address). A private temp dir with the address file written keeps them here."""
    import ray

    from serving.registry.config import RegistryConfig
    from serving.registry.server import start_registry
    from shared.basemodel import load_base_model
    from training.service.config import TrainingServiceConfig
    from training.service.server import start_training_service

    temp_dir = tempfile.mkdtemp(prefix="ray-ts-", dir="/tmp")  # short: Ray's socket paths live under it
    context = ray.init(num_cpus=2, include_dashboard=True, dashboard_port=0, _temp_dir=temp_dir)
    ray._private.utils.write_ray_address(context.address_info["gcs_address"], temp_dir)
    dashboard = f"http://{context.dashboard_url}"
    loop = LoopThread()
    spec = load_base_model(base_dir).spec
    key_file = root / "job-token.key"
    key_file.write_text(secrets.token_urlsafe(48))
    (root / "server-images").mkdir()
    registry = loop.run(
        start_registry(
            RegistryConfig(
                data_dir=root / "registry", metrics_port=None, shutdown_grace_s=0, job_token_key_file=key_file
            ),
            base_specs=[spec],
            tokens=tokens,
        )
    )
    config = TrainingServiceConfig(
        data_dir=root / "training",
        base_model=str(base_dir),
        ray_address=dashboard,
        registry=f"127.0.0.1:{registry.port}",
        job_token_key_file=key_file,
        allowed_image_roots=[root / "server-images"],
        limits=limits,
        poll_interval_s=0.3,
        shutdown_grace_s=0,
    )
    service = loop.run(start_training_service(config, tokens=tokens))
    try:
        yield TrainingStack(service, registry, spec, root, dashboard)
    finally:
        loop.run(service.stop(0))
        loop.run(registry.stop(0))
        loop.close()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
