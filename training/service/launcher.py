"""Runs jobs as Ray Jobs through the Ray job-submission API, so that each training job is its own
driver process on the cluster, isolated from the Serve application and from this service."""

from __future__ import annotations

import shlex
import time
from functools import cached_property

from ray.job_submission import JobSubmissionClient

from shared.errors import Unavailable

SUBMIT_RETRY_S = 1.0


class RayJobLauncher:
    """`address`: the Ray dashboard (http://host:8265); None lets Ray find it (RAY_ADDRESS, local)."""

    def __init__(self, address: str | None, *, python: str, submit_timeout_s: float) -> None:
        self._address = address
        self._python = python
        self._submit_timeout_s = submit_timeout_s

    @cached_property
    def _client(self) -> JobSubmissionClient:
        try:
            return JobSubmissionClient(self._address)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise Unavailable(f"the Ray cluster at {self._address or 'auto'} cannot be reached ({e})") from e

    def submit(self, job_id: str, spec_path: str) -> str:
        """Start `python -m training.job --spec spec_path`; returns the Ray job's submission id."""
        entrypoint = f"{shlex.quote(self._python)} -m training.job --spec {shlex.quote(spec_path)}"
        deadline = time.monotonic() + self._submit_timeout_s
        while True:
            try:
                return self._client.submit_job(entrypoint=entrypoint, submission_id=job_id, entrypoint_num_cpus=0)
            except (ConnectionError, RuntimeError) as e:
                # e.g. "No available agent to submit job" while a fresh cluster's agent starts
                if self._known(job_id):
                    return job_id  # an earlier attempt went through; its reply was lost
                if time.monotonic() > deadline:
                    raise Unavailable(f"submitting training job {job_id!r} to Ray failed ({e})") from e
                time.sleep(SUBMIT_RETRY_S)

    def _known(self, ray_job_id: str) -> bool:
        try:
            return self.exists(ray_job_id)
        except Unavailable:
            return False

    def exists(self, ray_job_id: str) -> bool:
        """Whether Ray has a job with this submission id; Unavailable when Ray cannot say."""
        try:
            return any(job.submission_id == ray_job_id for job in self._client.list_jobs())
        except (ConnectionError, RuntimeError) as e:
            raise Unavailable(f"listing Ray jobs failed ({e})") from e

    def status(self, ray_job_id: str) -> str:
        """PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED."""
        try:
            return self._client.get_job_status(ray_job_id).value
        except (ConnectionError, RuntimeError) as e:
            raise Unavailable(f"Ray job {ray_job_id!r} status is unavailable ({e})") from e

    def stop(self, ray_job_id: str) -> None:
        try:
            self._client.stop_job(ray_job_id)
        except (ConnectionError, RuntimeError) as e:
            raise Unavailable(f"stopping Ray job {ray_job_id!r} failed ({e})") from e
