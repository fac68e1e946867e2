"""Entry point of a training Ray Job:

    ray job submit -- python -m training.job --spec JOB_DIR/job.json

Runs the Ray Train job for the spec, then publishes the artifact to the registry over gRPC
(waiting for a registry that is still starting; an upload is never repeated, since a repeat would
add a version), recording every state in JOB_DIR/progress.json.
The job publishes with the token in `registry_token_file`, which the training service minted for
this job alone (publish its concept id, for its tenant, until it expires).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import Field

from shared.config import StrictModel
from shared.errors import CdserveError
from shared.registry_client import RegistryClient
from training.config import TrainConfig
from training.distributed import DistributedOptions, run_distributed
from training.progress import ProgressFile, mark

log = logging.getLogger("cdserve.training.job")


class JobSpec(StrictModel):
    """Everything a training job needs, written by the training service into the job directory."""

    train: TrainConfig
    options: DistributedOptions
    registry: str | None = Field(None, description="Registry 'host:port' to publish to; None: do not publish")
    registry_tls_ca_file: str | None = Field(None, description="PEM bundle to trust; enables TLS to the registry")
    registry_token_file: str | None = Field(None, description="File holding the job's publish token (mode 0600)")
    public: bool = Field(False, description="Publish the concept as public")
    labels: dict[str, str] = Field(default_factory=dict, description="Registry labels of the published concept")


def publish(spec: JobSpec, path: Path, token: str | None) -> str:
    """Upload the artifact; returns 'id@version'."""
    with RegistryClient(spec.registry, token=token, tls_ca_file=spec.registry_tls_ca_file) as client:  # type: ignore[arg-type]
        client.wait_ready()
        result = client.publish(path, public=spec.public, labels=spec.labels)
    return f"{result.concept.concept_id}@{result.concept.version}"


def run(spec: JobSpec, token: str | None) -> int:
    import ray

    progress = ProgressFile(spec.options.job_dir)
    mark(progress, "RUNNING", total_steps=spec.train.total_steps)
    try:
        ray.init(ignore_reinit_error=True)
        path = run_distributed(spec.train, spec.options)
        if spec.registry:
            mark(progress, "PUBLISHING")
            progress.update(published=[publish(spec, path, token)])
        mark(progress, "SUCCEEDED", artifact=str(path))
        return 0
    except CdserveError as e:
        mark(progress, "FAILED", error={"reason": e.reason, "field": e.field, "message": e.message})
    except Exception as e:  # the job must record any failure before it exits
        log.exception("training job failed")
        mark(progress, "FAILED", error={"reason": "INTERNAL", "field": "", "message": f"{type(e).__name__}: {e}"})
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.job", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, type=Path, help="job.json written by the training service")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = JobSpec.model_validate_json(args.spec.read_text())
    token = Path(spec.registry_token_file).read_text().strip() if spec.registry_token_file else None
    return run(spec, token)


if __name__ == "__main__":
    sys.exit(main())
