"""The training service's domain (no gRPC): submit, get, list, cancel and watch jobs.

A job's state is the merge of three sources, most authoritative first: a cancellation recorded
here; the job's own progress file (RUNNING/PUBLISHING/SUCCEEDED/FAILED, step, loss, ETA,
published refs); Ray's job status (which alone knows about a driver that died without writing).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from proto import training_pb2
from shared.auth import OPERATOR_TENANT, load_job_token_key, mint_job_token
from shared.errors import CdserveError, Conflict, InvalidArgument, NotFound
from training.distributed import DistributedOptions
from training.job import JobSpec
from training.progress import ProgressFile, now_ms
from training.samples import Sample, read_sample
from training.service.config import TrainingServiceConfig
from training.service.launcher import RayJobLauncher
from training.service.metrics import TrainingMetrics
from training.service.store import TERMINAL_STATES, JobRecord, JobStore
from training.service.submission import Submission

log = logging.getLogger("cdserve.training.service")
JOB_FILE = "job.json"
JOB_TOKEN_FILE = "publish.token"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_SAMPLE_BYTES = 2 << 20
"""A larger sample image is left out of the job's message (gRPC's default message limit is 4 MiB)."""


@dataclass(frozen=True)
class JobView:
    """A job as callers see it: its record, its current state, its progress file's contents and (for
    Get and Watch, not List) its latest sample image."""

    record: JobRecord
    state: str
    progress: dict[str, Any] = field(default_factory=dict)
    sample: Sample | None = None

    def signature(self) -> tuple:
        """What a Watch reports a change of (a restart of the workers and a new sample among them)."""
        p = self.progress
        return (
            self.state,
            p.get("step"),
            p.get("loss"),
            p.get("attempt"),
            tuple(p.get("published", ())),
            self.record.message,
            self.sample.step if self.sample else None,
        )


def resolve_state(recorded: str, progress_state: str | None, ray_status: str | None) -> str:
    if recorded == "CANCELLED":
        return recorded
    if progress_state in TERMINAL_STATES:
        return progress_state
    if ray_status == "STOPPED":
        return "CANCELLED"
    if ray_status in ("FAILED", "SUCCEEDED"):
        return "FAILED"  # the driver ended without recording success
    return progress_state or recorded


class TrainingService:
    def __init__(
        self, config: TrainingServiceConfig, store: JobStore, launcher: RayJobLauncher, metrics: TrainingMetrics
    ) -> None:
        self._config = config
        self._store = store
        self._launcher = launcher
        self._metrics = metrics
        self._jobs_dir = config.data_dir / "jobs"
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        self._job_key = load_job_token_key(config.job_token_key_file) if config.job_token_key_file else None
        self._last_step: dict[str, int] = {}
        self.refresh_passes = 0
        """Completed `refresh` passes: after two more, every job's state was re-read since a given moment."""
        self._launching: dict[str, asyncio.Task[None]] = {}

    # -- submit ---------------------------------------------------------------------------------

    async def submit(self, tenant: str, messages: AsyncIterator[training_pb2.SubmitRequest]) -> JobView:
        """Validate and store the stream, record the job (PENDING) and return; its Ray Job starts in
        the background, because a fresh cluster's job agent can take a minute to accept it. Nothing
        remains of a submission that fails validation.

        The job publishes with a token minted for it (its tenant, its concept id, an expiry), written
        to a file only the service's user may read: never the submitter's own token, and nothing in
        the Ray Job's runtime_env, which Ray's dashboard shows."""
        job_id = uuid.uuid4().hex[:16]
        job_dir = self._jobs_dir / job_id
        job_dir.mkdir()
        try:
            submission = Submission(job_dir, self._config.limits, roots=self._config.allowed_image_roots)
            async for message in messages:
                await asyncio.to_thread(submission.accept, message)
            train = submission.train_config(base_model=self._config.base_model, output_dir=job_dir / "output")
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        spec = JobSpec(
            train=train,
            options=DistributedOptions(job_dir=str(job_dir), max_failures=self._config.max_failures),
            registry=self._config.registry,
            registry_tls_ca_file=self._config.registry_tls_ca_file,
            registry_token_file=self._write_job_token(job_dir, tenant, train.artifact_id),
            public=submission.spec.public,  # type: ignore[union-attr]
            labels={"training_job": job_id},
        )
        (job_dir / JOB_FILE).write_text(spec.model_dump_json(indent=1))
        record = self._store.insert(
            JobRecord(
                job_id,
                tenant,
                "PENDING",
                now_ms(),
                str(job_dir),
                submission.spec.SerializeToString(),  # type: ignore[union-attr]
                ray_job_id=job_id,
            )  # the Ray submission id is the job id: known before Ray answers
        )
        self._launching[job_id] = asyncio.get_running_loop().create_task(self._launch(record))
        return JobView(record, record.state, {})

    def _write_job_token(self, job_dir: Path, tenant: str, concept_id: str) -> str | None:
        if self._job_key is None:
            return None
        ttl_s = self._config.job_token_ttl_s
        token = mint_job_token(self._job_key, tenant=tenant, concept_ids=[concept_id], ttl_s=ttl_s)
        path = job_dir / JOB_TOKEN_FILE
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(token)
        return str(path)

    async def _launch(self, record: JobRecord) -> None:
        try:
            await asyncio.to_thread(self._launcher.submit, record.job_id, str(Path(record.job_dir) / JOB_FILE))
        except Exception as e:  # noqa: BLE001 -- any launch failure marks the job FAILED with its message
            log.warning("training job %s could not start: %s", record.job_id, e)
            self._store.update(
                self._store.get(record.job_id), state="FAILED", message=f"could not start the Ray job: {e}"
            )
        else:
            if self._store.get(record.job_id).state == "CANCELLED":  # cancelled while it was being launched
                await asyncio.to_thread(self._launcher.stop, record.job_id)
        finally:
            del self._launching[record.job_id]

    # -- read -----------------------------------------------------------------------------------

    def _visible(self, tenant: str, job_id: str) -> JobRecord:
        record = self._store.get(job_id)
        if tenant not in (OPERATOR_TENANT, record.tenant):
            raise NotFound(f"training job {job_id!r} does not exist", field="job_id")
        return record

    async def _view(self, record: JobRecord) -> JobView:
        """Current state; persisted when it changed, so List can filter by it."""
        progress = ProgressFile(record.job_dir).read()
        if record.finished:
            return JobView(record, record.state, progress)
        if record.job_id in self._launching:
            return JobView(record, record.state, progress)
        ray_status = await asyncio.to_thread(self._launcher.status, record.ray_job_id) if record.ray_job_id else None
        state = resolve_state(record.state, progress.get("state"), ray_status)
        if state != record.state:
            record = self._store.update(record, state=state)
        self._observe_steps(record.job_id, progress)
        return JobView(record, state, progress)

    def _observe_steps(self, job_id: str, progress: dict[str, Any]) -> None:
        step, seconds = int(progress.get("step", 0)), progress.get("seconds_per_step")
        advanced = step - self._last_step.get(job_id, 0)
        if advanced > 0 and seconds:
            self._metrics.observe_steps(advanced, float(seconds))
            self._last_step[job_id] = step

    async def get(self, tenant: str, job_id: str) -> JobView:
        return await self._with_sample(await self._view(self._visible(tenant, job_id)))

    async def _with_sample(self, view: JobView, known: Sample | None = None) -> JobView:
        """The view with the job's latest sample; `known` (the one a Watch sent last) is reused
        while the progress file names no newer one."""
        if "sample_step" not in view.progress:
            return view
        if known is not None and known.step == view.progress["sample_step"]:
            return replace(view, sample=known)
        sample = await asyncio.to_thread(read_sample, view.record.job_dir, max_bytes=MAX_SAMPLE_BYTES)
        return replace(view, sample=sample)

    async def list(
        self, tenant: str, *, state: str | None, page_size: int, page_token: str
    ) -> tuple[list[JobView], str]:
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _parse_page_token(page_token)
        records = self._store.list(
            tenant=None if tenant == OPERATOR_TENANT else tenant, state=state, after=after, limit=size + 1
        )
        views = [await self._view(record) for record in records[:size]]
        last = records[size - 1] if len(records) > size else None
        return views, f"{last.created_ms}:{last.job_id}" if last else ""

    async def cancel(self, tenant: str, job_id: str) -> JobView:
        """Stop the job's Ray job and record CANCELLED. Cancelling a cancelled job is a no-op (safe
        to retry); a job that already SUCCEEDED or FAILED cannot be cancelled: CONFLICT, naming
        its state, rather than an OK the caller could mistake for a cancellation."""
        record = self._visible(tenant, job_id)
        view = await self._view(record)
        if view.state == "CANCELLED":
            return view
        if view.state in TERMINAL_STATES:
            raise Conflict(f"training job {job_id!r} already {view.state}; there is nothing to cancel", field="job_id")
        record = self._store.update(view.record, state="CANCELLED", message="cancelled on request")
        if record.job_id not in self._launching:  # else the launch stops it once Ray has it
            await asyncio.to_thread(self._launcher.stop, record.ray_job_id)
        return JobView(record, record.state, view.progress)

    async def watch(self, tenant: str, job_id: str) -> AsyncIterator[JobView]:
        """The job's view whenever it changes, ending with its terminal state."""
        record = self._visible(tenant, job_id)
        last: tuple | None = None
        sample: Sample | None = None
        while True:
            view = await self._with_sample(await self._view(record), sample)
            sample = view.sample
            if view.signature() != last:
                last = view.signature()
                yield view
            if view.state in TERMINAL_STATES:
                return
            await asyncio.sleep(self._config.poll_interval_s)
            record = self._store.get(job_id)  # fresh: a background launch may have failed it

    # -- background -----------------------------------------------------------------------------

    async def fail_unlaunched(self) -> None:
        """At start: a PENDING job that Ray never received was being launched when the service
        stopped; its submitter's token is gone, so it cannot be launched now."""
        for record in self._store.unfinished():
            if record.state != "PENDING":
                continue
            try:
                launched = await asyncio.to_thread(self._launcher.exists, record.ray_job_id)
            except CdserveError as e:
                log.warning("cannot tell whether training job %s started: %s", record.job_id, e.message)
                continue
            if not launched:
                self._store.update(
                    record, state="FAILED", message="the service restarted before the job started; submit it again"
                )

    async def refresh(self) -> None:
        """Bring every unfinished job's state up to date and publish the counts."""
        for record in self._store.unfinished():
            try:
                await self._view(record)
            except CdserveError as e:
                log.warning("could not refresh training job %s: %s", record.job_id, e.message)
        self._metrics.set_job_counts(self._store.count_by_state())
        self.refresh_passes += 1

    async def refresh_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._config.poll_interval_s)


def _parse_page_token(token: str) -> tuple[int, str] | None:
    if not token:
        return None
    created, _, job_id = token.partition(":")
    if not created.isdigit() or not job_id:
        raise InvalidArgument(f"page_token {token!r} is not one this service issued", field="page_token")
    return int(created), job_id
