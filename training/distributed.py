"""The Ray Train job: a `TorchTrainer` runs `ConceptTrainer` steps on N data-parallel workers (DDP;
gloo on CPU, NCCL on GPU), reports metrics, checkpoints every `checkpoint_every` steps and, when a
worker dies, restarts the group from the latest checkpoint (`FailureConfig.max_failures`).

Only rank 0 writes: checkpoints, the progress file, samples and the final artifact.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import torch
import torch.distributed as dist
from pydantic import Field
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, get_device, prepare_model

from shared.basemodel import load_base_model
from shared.config import StrictModel
from training.checkpoint import load_state, save_state
from training.config import TrainConfig
from training.loop import build_trainer, run_metrics
from training.output import artifact_path, write_result
from training.progress import ProgressFile, StepClock, begin_attempt
from training.samples import record_if_due

REPORT_EVERY = 10
FAULT_MARKER = ".fault-injected"


class DistributedOptions(StrictModel):
    """How the run is executed (not what is learned)."""

    job_dir: str = Field(description="Where progress.json is written")
    max_failures: int = Field(3, ge=0, le=100, description="Worker-group restarts before the run fails")
    fail_once_at_step: int | None = Field(
        None, ge=1, description="Testing only: rank 0 SIGKILLs itself once, right after this step"
    )


def _mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of `value` over the worker group. NCCL reduces only tensors on the worker's GPU
    (a CPU tensor fails there), gloo only CPU ones: the scalar goes where the backend can reduce it."""
    if not dist.is_initialized():
        return value
    on = device if dist.get_backend() == dist.Backend.NCCL else torch.device("cpu")
    tensor = torch.tensor([value], dtype=torch.float64, device=on)
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def _inject_fault(options: DistributedOptions, config: TrainConfig, step: int) -> None:
    marker = Path(config.output_dir) / FAULT_MARKER
    if options.fail_once_at_step == step and not marker.exists():
        marker.write_text(str(step))
        ray.train.get_all_reported_checkpoints()  # die only once the controller holds the last checkpoint
        os.kill(os.getpid(), signal.SIGKILL)


def worker_loop(params: dict[str, Any]) -> None:
    """`train_loop_per_worker`: build, resume if there is a checkpoint, train, write the result."""
    config = TrainConfig.model_validate(params["config"])
    options = DistributedOptions.model_validate(params["options"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    started = time.perf_counter()
    device = get_device()
    base = load_base_model(config.base_model, device=device)
    find_unused = config.recipe.trains_token and len(config.concepts) > 1  # a rank's batch may miss a concept
    trainer = build_trainer(
        config,
        base,
        rank=rank,
        world_size=world_size,
        wrap=lambda module: prepare_model(
            module, move_to_device=False, parallel_strategy_kwargs={"find_unused_parameters": find_unused}
        ),
        barrier=dist.barrier if dist.is_initialized() else None,
    )
    resumed_from = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.restore(load_state(directory))
        resumed_from = trainer.step
    total = config.total_steps
    clock = StepClock(total, first_step=trainer.step)
    progress = ProgressFile(options.job_dir) if rank == 0 else None
    if progress is not None:
        begin_attempt(progress, step=trainer.step, total_steps=total)
    while trainer.step < total:
        loss = _mean_over_ranks(trainer.train_step(), device)
        step = trainer.step
        metrics = {
            "step": step,
            "loss": loss,
            "seconds_per_step": clock.seconds_per_step(step),
            "resumed_from_step": resumed_from,
        }
        if progress is not None:
            progress.update(step=step, loss=loss, eta_s=clock.eta_s(step), seconds_per_step=metrics["seconds_per_step"])
            record_if_due(config, base, trainer, progress)
        if step % config.recipe.checkpoint_every == 0 or step == total:
            _report_checkpoint(trainer, metrics, rank)
        elif step % REPORT_EVERY == 0:
            ray.train.report(metrics)
        if rank == 0:
            _inject_fault(options, config, step)
    if rank == 0:
        final = {**run_metrics(trainer, clock, started), "resumed_from_step": resumed_from}
        path = write_result(config, trainer, base.spec, final)
        if progress is not None:
            progress.update(artifact=str(path), metrics=final)


def _report_checkpoint(trainer: Any, metrics: dict[str, Any], rank: int) -> None:
    """Every rank reports (Ray Train synchronises on it); rank 0 attaches the checkpoint."""
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        save_state(trainer.state(metrics), directory)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(directory))


def use_gpu(config: TrainConfig) -> bool:
    if config.recipe.use_gpu is not None:
        return config.recipe.use_gpu
    return ray.cluster_resources().get("GPU", 0) > 0


def run_distributed(config: TrainConfig, options: DistributedOptions) -> Path:
    """Run the training on the connected Ray cluster (`ray.init` first); returns the artifact path."""
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"config": config.model_dump(mode="json"), "options": options.model_dump(mode="json")},
        scaling_config=ScalingConfig(num_workers=config.recipe.num_workers, use_gpu=use_gpu(config)),
        run_config=RunConfig(
            name="train",
            storage_path=str(Path(config.output_dir).resolve() / "ray"),
            failure_config=FailureConfig(max_failures=options.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    trainer.fit()
    path = artifact_path(config)
    if not path.exists():
        raise RuntimeError(f"the training run ended without writing {path}")
    return path
